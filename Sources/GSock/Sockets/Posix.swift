// Every system call of the socket layer goes through here: EINTR is retried and a
// failure comes back as its errno, the only place errno is read.
import CShims
import Glibc

enum Posix {
    /// The result of a call: a non-negative value, or the errno of a failure.
    enum Result {
        case ok(Int)
        case failed(Int32)
    }

    @inline(__always)
    static func call(_ body: () -> Int) -> Result {
        while true {
            let r = body()
            if r >= 0 { return .ok(r) }
            let e = errno
            if e != EINTR { return .failed(e) }
        }
    }

    /// Descriptors are non-blocking and close on exec from the start.
    private static let descriptorFlags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    static func socket(_ domain: Int32, _ type: Int32) -> Result {
        let flags = type | descriptorFlags
        return call { Int(Glibc.socket(domain, flags, 0)) }
    }

    static func recv(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int, _ flags: Int32 = 0) -> Result {
        call { Glibc.recv(fd, buf, n, flags) }
    }

    static func send(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Result {
        call { Glibc.send(fd, buf, n, Int32(MSG_NOSIGNAL)) }
    }

    static func accept(_ fd: Int32) -> Result {
        call { Int(gs_accept(fd)) }
    }

    static func connect(_ fd: Int32, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in call { Int(Glibc.connect(fd, sa, len)) } }
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in call { Int(Glibc.bind(fd, sa, len)) } }
    }

    static func listen(_ fd: Int32, _ backlog: Int32) -> Result {
        call { Int(Glibc.listen(fd, backlog)) }
    }

    static func shutdown(_ fd: Int32, _ how: Int32) -> Result {
        call { Int(Glibc.shutdown(fd, how)) }
    }

    static func close(_ fd: Int32) {
        // Linux closes the descriptor even when close reports EINTR: never retry.
        _ = Glibc.close(fd)
    }

    static func setsockopt<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) -> Result {
        withUnsafePointer(to: value) { p in
            call { Int(Glibc.setsockopt(fd, level, name, p, socklen_t(MemoryLayout<T>.size))) }
        }
    }

    static func getsockopt<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ initial: T) -> (Result, T) {
        var value = initial
        var len = socklen_t(MemoryLayout<T>.size)
        let r = withUnsafeMutablePointer(to: &value) { p in
            call { Int(Glibc.getsockopt(fd, level, name, p, &len)) }
        }
        return (r, value)
    }

    static func sendto(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in call { Glibc.sendto(fd, buf, n, Int32(MSG_NOSIGNAL), sa, len) } }
    }

    static func recvfrom(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> (Result, SocketAddress?) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                call { Glibc.recvfrom(fd, buf, n, Int32(MSG_TRUNC), sa, &len) }
            }
        }
        if case .ok = r { return (r, SocketAddress(storage: storage, length: len)) }
        return (r, nil)
    }

    static func name(of fd: Int32, peer: Bool) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                call { Int(peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) }
            }
        }
        guard case .ok = r else { return nil }
        return SocketAddress(storage: storage, length: len)
    }
}

/// The text of a NUL-terminated C string held in an array.
func cString(_ chars: [CChar]) -> String {
    chars.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
