// The bytes an HTTP connection has queued to send: appends are a capacity check and a
// memcpy. ([UInt8]'s append(contentsOf:) cost about 190 instructions a call, callgrind
// said, and a response takes eight or more.) Noncopyable: it owns its memory.
import Glibc

struct OutputBuffer: ~Copyable {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var count = 0
    private(set) var capacity = 0

    init() {}

    deinit { Glibc.free(base) }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawPointer, count n: Int) {
        guard n > 0 else { return }
        if count + n > capacity { grow(to: count + n) }
        (base! + count).copyMemory(from: bytes, byteCount: n)
        count += n
    }

    @inline(__always)
    mutating func append(static text: StaticString) {
        append(text.utf8Start, count: text.utf8CodeUnitCount)
    }

    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { if let p = $0.baseAddress { append(p, count: $0.count) } }
    }

    /// Appends `n` (>= 0) in decimal.
    mutating func append(decimal n: Int) {
        withDigits(of: n, radix: 10) { append($0, count: $1) }
    }

    /// Appends `n` (>= 0) in hexadecimal (a chunk size).
    mutating func append(hex n: Int) {
        withDigits(of: n, radix: 16) { append($0, count: $1) }
    }

    /// Drops everything after the first `n` bytes.
    mutating func truncate(to n: Int) { count = min(count, n) }

    /// Empties the buffer and frees its memory.
    mutating func removeAll() {
        count = 0
        Glibc.free(base)
        base = nil
        capacity = 0
    }

    private mutating func grow(to needed: Int) {
        var size = max(capacity * 2, 256)
        while size < needed { size *= 2 }
        guard let grown = realloc(base, size) else { fatalError("out of memory: an HTTP response of \(size) bytes") }
        base = grown
        capacity = size
    }
}
