// A datagram socket's operations: send, sendto, receive and connect. Sends never wait (a
// full socket buffer is a timeout at once, as LuaSocket's sends with timeout 0); a receive
// that finds nothing says so and the caller parks.
import Glibc

extension Socket {
    /// Sends one datagram, to `address` or to the connected peer: the bytes sent.
    func sendDatagram(_ data: UnsafeRawBufferPointer, to address: SocketAddress?) -> Step<Int> {
        let bytes = data.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        let result = address.map { Syscall.sendto(fd, bytes, data.count, $0) } ?? Syscall.send(fd, bytes, data.count)
        switch result {
        case .ok(let n):
            sent += n
            runtime.bytesOut += n
            return .done(n)
        case .wouldBlock: return .failed(.timeout)
        case .failed(let e): return .failed(.system(e))
        }
    }

    /// Receives one datagram of at most `size` bytes (the rest of a longer one is dropped);
    /// `deliver` gets its bytes and its sender.
    func receiveDatagram(size: Int, deliver: (UnsafeBufferPointer<UInt8>, SocketAddress?) -> Void) -> Step<Void> {
        var storage = [UInt8](repeating: 0, count: max(size, 1))
        let (result, peer) = storage.withUnsafeMutableBytes { Syscall.recvfrom(fd, $0.baseAddress!, size) }
        switch result {
        case .ok(let n):
            let taken = min(n, size)
            received += taken
            runtime.bytesIn += taken
            storage.withUnsafeBufferPointer { deliver(UnsafeBufferPointer(rebasing: $0[0..<taken]), peer) }
            return .done(())
        case .wouldBlock: return .wait(.read)
        case .failed(let e): return .failed(.system(e))
        }
    }

    /// Connects to the first of `clientState.connectCandidates` that works (a datagram
    /// connect never waits).
    func connectDatagram() throws(SystemError) { try firstCandidate("connect") { Syscall.connect(fd, $0) } }
}
