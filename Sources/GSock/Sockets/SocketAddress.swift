// An IPv4, IPv6 or unix socket address.
import Glibc

struct SocketAddress {
    var storage: sockaddr_storage
    var length: socklen_t

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    var family: Int32 { Int32(storage.ss_family) }

    /// A numeric IPv4 or IPv6 address, or nil if `host` is not one.
    init?(numericHost host: String, port: UInt16) {
        var storage = sockaddr_storage()
        var sin = sockaddr_in()
        if inet_pton(AF_INET, host, &sin.sin_addr) == 1 {
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
            return
        }
        var sin6 = sockaddr_in6()
        if inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1 {
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
            return
        }
        return nil
    }

    /// The longest unix socket path: sun_path's size less its terminating NUL (107 bytes on Linux).
    static let maxUnixPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// A unix-domain address; nil when the path is longer than `maxUnixPathBytes`.
    init?(unixPath path: String) {
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= SocketAddress.maxUnixPathBytes else { return nil }
        withUnsafeMutableBytes(of: &sun.sun_path) { dst in dst.copyBytes(from: bytes) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sun) { dst.copyMemory(from: $0) } }
        self.init(storage: storage, length: socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }

    init(addrinfo ai: UnsafePointer<addrinfo>) {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
        }
        self.init(storage: storage, length: ai.pointee.ai_addrlen)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// The numeric host, the port, and LuaSocket's family name ("inet", "inet6").
    var hostPortFamily: (host: String, port: Int, family: String) {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch family {
        case AF_INET:
            return withUnsafeBytes(of: storage) { raw in
                var sin = raw.load(as: sockaddr_in.self)
                inet_ntop(AF_INET, &sin.sin_addr, &buf, socklen_t(buf.count))
                return (cString(buf), Int(UInt16(bigEndian: sin.sin_port)), "inet")
            }
        case AF_INET6:
            return withUnsafeBytes(of: storage) { raw in
                var sin6 = raw.load(as: sockaddr_in6.self)
                inet_ntop(AF_INET6, &sin6.sin6_addr, &buf, socklen_t(buf.count))
                return (cString(buf), Int(UInt16(bigEndian: sin6.sin6_port)), "inet6")
            }
        default:
            return (unixPath, 0, "unix")
        }
    }

    var unixPath: String {
        withUnsafeBytes(of: storage) { raw in
            let sun = raw.load(as: sockaddr_un.self)
            return withUnsafeBytes(of: sun.sun_path) { p in
                String(decoding: p.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
    }
}
