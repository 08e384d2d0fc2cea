// A stream socket's receives: LuaSocket's patterns ("*l", "*a", a count) and OpenResty's
// receiveany and receiveuntil, over the receive buffer and the transport. A step takes
// what is buffered, reads once more when that is not enough, and says whether the caller
// must wait; the read's progress (`reading`, the accumulator) stays in the socket between
// waits. Results are handed to `deliver`, whose bytes are valid only during the call.
import Glibc

extension Socket {
    enum Pattern {
        case line, all
        case count(Int)
    }

    /// The receive in progress.
    enum Reading {
        case pattern(Pattern)
        case any(max: Int)
        /// `searched`: the bytes of the buffer searched for the delimiter so far (an Int32:
        /// the enum stays 24 bytes).
        case until(delimiter: [UInt8], size: Int?, searched: Int32)
    }

    enum ReceiveStep {
        case received
        case wait(Direction)
        /// `partial`: the accumulator holds what to return with the failure.
        case failed(SocketFailure, partial: Bool)
    }

    enum Fill {
        case data, closed
        case wait(Direction)
        case failed(SocketFailure)
    }

    /// Reads once into the buffer (the HTTP layer reads heads with it too).
    @inline(__always)
    func fill() -> Fill {
        if drained { return .wait(.read) }
        let (result, space) = withRuntime { runtime in
            buffer.fill(spares: &runtime.spareChunks) { transportRead(into: $0, count: $1) }
        }
        switch result {
        case .ok(let n):
            received += n
            withRuntime { $0.bytesIn += n }
            if let m = metrics { m.bytesIn += n }
            drained = n < space && transportBufferedInput == 0
            return .data
        case .closed:
            return .closed
        case .wait(let direction):
            if direction == .read { drained = true }
            return .wait(direction)
        case .failed(let e):
            return .failed(e)
        }
    }

    /// When no wait is allowed (timeout 0, or the deadline has passed), a socket thought
    /// drained is read once more before "timeout": data may have come since.
    private func mustProbe(_ probed: inout Bool) -> Bool {
        guard !probed, drained, waitLimit(deadline: receiveDeadline) == 0 else { return false }
        probed = true
        drained = false
        return true
    }

    /// A receive went past memory_limit.
    private func outOfMemory() -> ReceiveStep {
        dropReceiveMemory()
        return .failed(.outOfMemory, partial: false)
    }

    // MARK: - receive(pattern)

    /// Goes on with `receive(pattern)`; the accumulator holds its prefix and what it took so far.
    @inline(__always)
    func receive(_ pattern: Pattern, deliver: (UnsafeBufferPointer<UInt8>) -> Void) -> ReceiveStep {
        var probed = false
        while true {
            let bytes = buffer.bytes
            switch pattern {
            case .count(let n):
                // LuaSocket reads at least once unless the prefix alone covers n, so even
                // receive(0) waits for data when nothing is buffered.
                if n == 0 && receivePrefixLength == 0 && bytes.isEmpty { break }
                if receiveAccumulator.isEmpty && bytes.count >= n {
                    deliver(UnsafeBufferPointer(rebasing: bytes[0..<n]))
                    buffer.consume(n)
                    return .received
                }
                let take = min(n - receiveAccumulator.count, bytes.count)
                if take > 0 {
                    receiveAccumulator.append(contentsOf: bytes[0..<take])
                    buffer.consume(take)
                }
                if receiveAccumulator.count >= n { return deliverAccumulator(deliver) }
            case .line:
                if let nl = find(10, in: bytes) {
                    // The common line, "...\r\n" or "...\n" with no other CR, is delivered
                    // straight from the buffer.
                    let end = nl > 0 && bytes[nl - 1] == 13 ? nl - 1 : nl
                    if receiveAccumulator.isEmpty && find(13, in: UnsafeBufferPointer(rebasing: bytes[0..<end])) == nil {
                        deliver(UnsafeBufferPointer(rebasing: bytes[0..<end]))
                        buffer.consume(nl + 1)
                        return .received
                    }
                    let line = UnsafeBufferPointer(rebasing: bytes[0..<nl])
                    receiveAccumulator.append(contentsOf: line.lazy.filter { $0 != 13 })
                    buffer.consume(nl + 1)
                    return deliverAccumulator(deliver)
                }
                if bytes.count > 0 {
                    receiveAccumulator.append(contentsOf: bytes.lazy.filter { $0 != 13 })
                    buffer.consume(bytes.count)
                }
            case .all:
                if bytes.count > 0 {
                    receiveAccumulator.append(contentsOf: bytes)
                    buffer.consume(bytes.count)
                }
            }
            switch fill() {
            case .data:
                if !countReceiveMemory() { return outOfMemory() }
                continue
            case .closed:
                // `*a` succeeds at the close if it read anything (LuaSocket's recvall).
                if case .all = pattern, receiveAccumulator.count > receivePrefixLength { return deliverAccumulator(deliver) }
                return .failed(.closed, partial: true)
            case .failed(let e):
                return .failed(e, partial: true)
            case .wait(let direction):
                if mustProbe(&probed) { continue }
                return .wait(direction)
            }
        }
    }

    private func deliverAccumulator(_ deliver: (UnsafeBufferPointer<UInt8>) -> Void) -> ReceiveStep {
        receiveAccumulator.withUnsafeBufferPointer { deliver($0) }
        if receiveAccumulator.capacity > 1 << 20 {
            receiveAccumulator = []   // a big result's memory is not kept for the next one
            _ = countReceiveMemory()
        } else if !receiveAccumulator.isEmpty {
            receiveAccumulator.removeAll(keepingCapacity: true)
        }
        return .received
    }

    // MARK: - receiveany(max)

    /// Whatever is available, 1 to `max` bytes, once there is any.
    func receiveAny(max: Int, deliver: (UnsafeBufferPointer<UInt8>) -> Void) -> ReceiveStep {
        var probed = false
        while true {
            let bytes = buffer.bytes
            if bytes.count > 0 {
                let n = min(max, bytes.count)
                deliver(UnsafeBufferPointer(rebasing: bytes[0..<n]))
                buffer.consume(n)
                return .received
            }
            switch fill() {
            case .data: continue
            case .closed: return .failed(.closed, partial: false)
            case .failed(let e): return .failed(e, partial: false)
            case .wait(let direction):
                if mustProbe(&probed) { continue }
                return .wait(direction)
            }
        }
    }

    // MARK: - receiveuntil(delimiter [, size])

    /// The bytes before the next `delimiter` (consumed with it; `found` true), or with `size`
    /// at most `size` bytes that cannot belong to it (`found` false). Everything unread
    /// stays in the buffer until a result is taken from it.
    func receiveUntil(_ delimiter: [UInt8], size: Int?,
                      deliver: (UnsafeBufferPointer<UInt8>, _ found: Bool) -> Void) -> ReceiveStep {
        var probed = false
        // Where the search goes on: the buffered bytes before it hold no start of a match
        // (kept across waits, so that a long wait for the delimiter is not quadratic).
        var from = 0
        if case .until(_, _, let searched) = reading { from = Int(searched) }
        while true {
            let bytes = buffer.bytes
            if let at = firstIndex(of: delimiter, in: bytes, from: min(from, bytes.count), below: size.map { $0 + 1 }) {
                deliver(UnsafeBufferPointer(rebasing: bytes[0..<at]), true)
                buffer.consume(at + delimiter.count)
                return .received
            }
            if let size, bytes.count >= size + delimiter.count - 1 {
                deliver(UnsafeBufferPointer(rebasing: bytes[0..<size]), false)
                buffer.consume(size)
                return .received
            }
            from = max(0, bytes.count - (delimiter.count - 1))
            reading = .until(delimiter: delimiter, size: size, searched: Int32(clamping: from))
            switch fill() {
            case .data:
                if !countReceiveMemory() { return outOfMemory() }
                continue
            case .closed:
                takeBufferAsPartial()
                return .failed(.closed, partial: true)
            case .failed(let e):
                takeBufferAsPartial()
                return .failed(e, partial: true)
            case .wait(let direction):
                if mustProbe(&probed) { continue }
                return .wait(direction)
            }
        }
    }

    /// receiveuntil's partial result is what the buffer holds.
    private func takeBufferAsPartial() {
        receiveAccumulator.append(contentsOf: buffer.bytes)
        buffer.consume(buffer.count)
    }

    // MARK: - Ends of a wait

    /// The wait of the receive in progress timed out: whether the accumulator holds a
    /// partial result to return with "timeout".
    func receiveTimedOut() -> Bool {
        switch reading {
        case .pattern: return true
        case .any: return false
        case .until:
            takeBufferAsPartial()
            return true
        }
    }

    /// The socket was closed under the receive in progress: whether the accumulator holds
    /// a partial result to return with "closed".
    var receiveClosedKeepsPartial: Bool {
        if case .pattern = reading { return true }
        return false
    }
}

/// The index of the first `byte` in `bytes` (memchr).
@inline(__always)
private func find(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = bytes.baseAddress, bytes.count > 0,
          let hit = memchr(base, Int32(byte), bytes.count) else { return nil }
    return UnsafeRawPointer(hit) - UnsafeRawPointer(base)
}

/// Where `pattern` first starts in `bytes` at or after `from`, looking only at starts
/// below `below`: memchr for its first byte, memcmp for the rest.
private func firstIndex(of pattern: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from: Int, below: Int?) -> Int? {
    guard let base = bytes.baseAddress, bytes.count >= pattern.count else { return nil }
    var last = bytes.count - pattern.count   // the last start a match may have
    if let below { last = min(last, below - 1) }
    return pattern.withUnsafeBytes { p -> Int? in
        let first = Int32(p[0]), rest = p.count - 1
        var i = from
        while i <= last {
            guard let hit = memchr(base + i, first, last - i + 1) else { return nil }
            let at = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
            if rest == 0 || memcmp(base + at + 1, p.baseAddress! + 1, rest) == 0 { return at }
            i = at + 1
        }
        return nil
    }
}
