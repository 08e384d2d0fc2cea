// Every system call of the runtime's sockets goes through here, in the shape of SwiftNIO's
// System.swift: EINTR is retried, EAGAIN comes back as `.wouldBlock` (and EINPROGRESS for
// connect), and a failure carries its errno and the call that failed. The only errno reader.
import CShims
import Glibc

/// A failed system call: its errno and its name.
struct SystemError: Error, Equatable, CustomStringConvertible {
    let errno: Int32
    let call: StaticString

    init(_ errno: Int32, _ call: StaticString) {
        self.errno = errno
        self.call = call
    }

    var description: String { "\(call): \(String(cString: strerror(errno)))" }

    static func == (a: SystemError, b: SystemError) -> Bool {
        a.errno == b.errno && a.call.description == b.call.description
    }
}

enum Syscall {
    /// The outcome of a call: its non-negative result, "try again once the descriptor is
    /// ready", or the failure.
    enum Result {
        case ok(Int)
        case wouldBlock
        case failed(SystemError)
    }

    @inline(__always)
    static func call(_ name: StaticString, blocks: Bool = true, _ body: () -> Int) -> Result {
        while true {
            let r = body()
            if r >= 0 { return .ok(r) }
            let e = errno
            if e == EINTR { continue }
            if blocks && (e == EAGAIN || e == EWOULDBLOCK) { return .wouldBlock }
            return .failed(SystemError(e, name))
        }
    }

    /// Descriptors are non-blocking and close on exec from the start.
    private static let descriptorFlags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    static func socket(_ domain: Int32, _ type: Int32) -> Result {
        let flags = type | descriptorFlags
        return call("socket", blocks: false) { Int(Glibc.socket(domain, flags, 0)) }
    }

    static func recv(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int, _ flags: Int32 = 0) -> Result {
        call("recv") { Glibc.recv(fd, buf, n, flags) }
    }

    static func send(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Result {
        call("send") { Glibc.send(fd, buf, n, Int32(MSG_NOSIGNAL)) }
    }

    /// `peer`: the IPv4 peer packed as gs_accept packs it, else 0.
    static func accept(_ fd: Int32, peer: inout UInt64) -> Result {
        call("accept") { Int(gs_accept(fd, &peer)) }
    }

    /// A connect that has begun but not finished is `.wouldBlock`: its outcome is SO_ERROR's
    /// once the descriptor is writable (`pendingError`).
    static func connect(_ fd: Int32, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in
            switch call("connect", { Int(Glibc.connect(fd, sa, len)) }) {
            case .failed(let e) where e.errno == EINPROGRESS: return .wouldBlock
            case let r: return r
            }
        }
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in call("bind", blocks: false) { Int(Glibc.bind(fd, sa, len)) } }
    }

    static func listen(_ fd: Int32, _ backlog: Int32) -> Result {
        call("listen", blocks: false) { Int(Glibc.listen(fd, backlog)) }
    }

    static func shutdown(_ fd: Int32, _ how: Int32) -> Result {
        call("shutdown", blocks: false) { Int(Glibc.shutdown(fd, how)) }
    }

    static func close(_ fd: Int32) {
        // Linux closes the descriptor even when close reports EINTR: never retry.
        _ = Glibc.close(fd)
    }

    static func setsockopt<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) -> Result {
        withUnsafePointer(to: value) { p in
            call("setsockopt", blocks: false) {
                Int(Glibc.setsockopt(fd, level, name, p, socklen_t(MemoryLayout<T>.size)))
            }
        }
    }

    static func getsockopt<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ initial: T) -> (Result, T) {
        var value = initial
        var len = socklen_t(MemoryLayout<T>.size)
        let r = withUnsafeMutablePointer(to: &value) { p in
            call("getsockopt", blocks: false) { Int(Glibc.getsockopt(fd, level, name, p, &len)) }
        }
        return (r, value)
    }

    /// The outcome of a connect that was `.wouldBlock`, once its descriptor is writable:
    /// nil when it connected.
    static func pendingError(_ fd: Int32) -> SystemError? {
        let (r, error) = getsockopt(fd, SOL_SOCKET, SO_ERROR, Int32(0))
        switch r {
        case .failed(let e): return e
        case .ok, .wouldBlock: return error == 0 ? nil : SystemError(error, "connect")
        }
    }

    static func sendto(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int, _ address: SocketAddress) -> Result {
        address.withSockaddr { sa, len in call("sendto") { Glibc.sendto(fd, buf, n, Int32(MSG_NOSIGNAL), sa, len) } }
    }

    static func recvfrom(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> (Result, SocketAddress?) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                call("recvfrom") { Glibc.recvfrom(fd, buf, n, Int32(MSG_TRUNC), sa, &len) }
            }
        }
        if case .ok = r { return (r, SocketAddress(storage: storage, length: len)) }
        return (r, nil)
    }

    /// The socket's own address or its peer's.
    static func name(of fd: Int32, peer: Bool) -> (Result, SocketAddress?) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                peer ? call("getpeername", blocks: false) { Int(getpeername(fd, sa, &len)) }
                     : call("getsockname", blocks: false) { Int(getsockname(fd, sa, &len)) }
            }
        }
        if case .ok = r { return (r, SocketAddress(storage: storage, length: len)) }
        return (r, nil)
    }

    /// Whether `fd` is an open descriptor (fcntl F_GETFD).
    static func isOpen(_ fd: Int32) -> Bool {
        if case .ok = call("fcntl", blocks: false, { Int(fcntl(fd, F_GETFD)) }) { return true }
        return false
    }

    /// Makes a descriptor from elsewhere (an adopted listener) non-blocking and close-on-exec.
    static func makeNonBlocking(_ fd: Int32) -> Result {
        switch call("fcntl", blocks: false, { Int(fcntl(fd, F_GETFL)) }) {
        case .ok(let flags):
            if case .failed(let e) = call("fcntl", blocks: false, { Int(fcntl(fd, F_SETFL, Int32(flags) | O_NONBLOCK)) }) {
                return .failed(e)
            }
            return call("fcntl", blocks: false) { Int(fcntl(fd, F_SETFD, FD_CLOEXEC)) }
        case let r: return r
        }
    }

    /// The words of errno as the last failed call (one not made through this layer, such as
    /// access(2) or a read inside OpenSSL) left it.
    static func lastErrorText() -> String { String(cString: strerror(errno)) }

    /// errno as a call made inside a library (OpenSSL's socket reads) left it.
    static func lastError(_ call: StaticString) -> SystemError { SystemError(errno, call) }

    /// poll(2) with a timeout in milliseconds: how many descriptors have events.
    static func poll(_ fds: inout [pollfd], timeout: Int32) -> Result {
        let count = nfds_t(fds.count)
        return fds.withUnsafeMutableBufferPointer { p in call("poll", blocks: false) { Int(Glibc.poll(p.baseAddress, count, timeout)) } }
    }
}

/// The text of a NUL-terminated C string held in an array (a buffer a C call filled).
func cString(_ chars: [CChar]) -> String {
    chars.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
