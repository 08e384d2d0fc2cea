// A stream socket's receive buffer, and the runtime's spare buffer chunks.
//
// A connection holds a buffer only while data flows: a receive that parks with nothing
// buffered gives its chunk back, so idle connections cost no buffer memory. The chunk
// goes to a small runtime-wide pool rather than to malloc, because a keep-alive
// connection parks after every request and would otherwise allocate 8 KiB per request.

/// LuaSocket's receive buffer: bytes read from the descriptor and not yet consumed.
struct ReceiveBuffer {
    static let chunk = 8192
    private(set) var storage: UnsafeMutablePointer<UInt8>?
    private(set) var capacity = 0
    private(set) var start = 0
    private(set) var end = 0

    var count: Int { end - start }
    var isEmpty: Bool { start == end }
    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: storage.map { $0 + start }, count: count) }

    mutating func consume(_ n: Int) {
        start += n
        if start == end { start = 0; end = 0 }
    }

    /// Keeps only the first `n` bytes held (a chunked body decoded in place leaves the
    /// bytes after its end there, and garbage past them).
    mutating func keepFirst(_ n: Int) {
        end = start + n
        if start == end { start = 0; end = 0 }
    }

    /// Reads once with `read` into free space, making room first (a first chunk comes from
    /// `spares`); also returns how many bytes it asked for (a shorter read means the
    /// descriptor is drained).
    @inline(__always)
    mutating func fill(spares: inout SpareChunks,
                       read: (UnsafeMutableRawPointer, Int) -> TransportResult) -> (TransportResult, Int) {
        if storage == nil {
            storage = spares.take()
            capacity = Self.chunk
        }
        if end == capacity {
            if start > 0 {
                (storage! + 0).update(from: storage! + start, count: count)
                end -= start
                start = 0
            } else {
                grow(to: capacity * 2, spares: &spares)
            }
        }
        let space = capacity - end
        let r = read(storage! + end, space)
        if case .ok(let n) = r { end += n }
        return (r, space)
    }

    private mutating func grow(to newCapacity: Int, spares: inout SpareChunks) {
        let newStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        if let storage {
            newStorage.update(from: storage + start, count: count)
            spares.give(storage, capacity: capacity)
        }
        end -= start
        start = 0
        storage = newStorage
        capacity = newCapacity
    }

    /// Drops the buffer and what it holds; its memory goes back to `spares`.
    mutating func release(to spares: inout SpareChunks) {
        if let storage { spares.give(storage, capacity: capacity) }
        storage = nil
        capacity = 0
        start = 0
        end = 0
    }
}

/// Up to `limit` free buffer chunks of `ReceiveBuffer.chunk` bytes, linked through their
/// first word. Taking and giving cost a few instructions; past the limit chunks are freed.
struct SpareChunks {
    static let limit = 32
    private var head: UnsafeMutableRawPointer?
    private(set) var count = 0

    mutating func take() -> UnsafeMutablePointer<UInt8> {
        guard let chunk = head else { return .allocate(capacity: ReceiveBuffer.chunk) }
        head = chunk.load(as: UnsafeMutableRawPointer?.self)
        count -= 1
        return chunk.assumingMemoryBound(to: UInt8.self)
    }

    /// Takes back memory of a buffer: kept when it is one chunk and there is room, else freed.
    mutating func give(_ memory: UnsafeMutablePointer<UInt8>, capacity: Int) {
        guard capacity == ReceiveBuffer.chunk, count < Self.limit else {
            memory.deallocate()
            return
        }
        let chunk = UnsafeMutableRawPointer(memory)
        chunk.storeBytes(of: head, as: UnsafeMutableRawPointer?.self)
        head = chunk
        count += 1
    }

    /// Frees every spare chunk.
    mutating func removeAll() {
        while count > 0 { take().deallocate() }
    }
}
