// The seam under a stream socket's operations: how its bytes cross the descriptor. The
// receive buffer, the patterns, timeouts, parking and the pool sit above it and are the
// same for every transport (LuaSocket's `p_io` under its `buffer.c` is the same seam).
// Today's transport is the descriptor itself; TLS is the second one.

/// What a transport's read or write did.
enum TransportResult {
    /// Bytes moved (never 0).
    case ok(Int)
    /// The peer closed its side (reads only).
    case closed
    /// Nothing can move until the descriptor is ready in `direction` (a TLS read may have
    /// to wait until it can write, and a write until it can read).
    case wait(Socket.Direction)
    case failed(SocketFailure)
}

/// A transport object (TLS): a socket with none uses `PlainTransport`.
protocol Transport: AnyObject {
    /// Reads up to `count` bytes into `buffer`.
    func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> TransportResult
    /// Writes up to `count` bytes from `bytes`.
    func write(_ fd: Int32, from bytes: UnsafeRawPointer, count: Int) -> TransportResult
    /// Bytes the transport already holds for the next read, which no readiness of the
    /// descriptor will announce (TLS: decrypted records); `dirty()` counts them.
    var bufferedInput: Int { get }
    /// Bytes written to the transport that the descriptor has not taken yet (TLS keeps what
    /// it encrypted when the socket is full); a send is done once they are gone.
    var pendingOutput: Int { get }
    /// Hands what the transport keeps to the descriptor: `.ok(0)` once nothing is left.
    func flush(_ fd: Int32) -> TransportResult
    /// The descriptor is about to close (TLS sends its close_notify).
    func willClose()
    /// For the pool: whether nothing but the transport's own records waits to be read and
    /// the peer has not closed (TLS reads session tickets here).
    func isIdle(_ fd: Int32) -> Bool
}

/// The plain descriptor: recv and send. A socket without a transport object reads and
/// writes through these directly, so the common path makes no dynamic call (an existential
/// call here cost 140 instructions per receive, 6% of a line round trip).
enum PlainTransport {
    @inline(__always)
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> TransportResult {
        switch Syscall.recv(fd, buffer, count) {
        case .ok(0): return .closed
        case .ok(let n): return .ok(n)
        case .wouldBlock: return .wait(.read)
        case .failed(let e): return .failed(.system(e))
        }
    }

    @inline(__always)
    static func write(_ fd: Int32, from bytes: UnsafeRawPointer, count: Int) -> TransportResult {
        switch Syscall.send(fd, bytes, count) {
        case .ok(let n): return .ok(n)
        case .wouldBlock: return .wait(.write)
        case .failed(let e): return .failed(.system(e))
        }
    }
}
