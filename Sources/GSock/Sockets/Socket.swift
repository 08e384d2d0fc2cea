// A socket of `require "socket"`: a non-blocking descriptor, a receive buffer (as
// LuaSocket's, so `dirty()` and line reads behave the same), one watcher per
// direction so that one fiber may receive while another sends, and LuaSocket's
// timeouts. The runtime owns every close, so the watchers are never re-registered
// by hand (no epoll_ctl per wait).
import CLibev
import CShims
import Glibc

// The hot fields below opt out of Swift's dynamic exclusivity checks (they cost 14% of
// a round trip): the runtime is one thread and never holds an access across a call
// that could reach the same socket.
final class Socket {
    /// LuaSocket's classes; the name is what `tostring` shows.
    enum Class: String {
        case tcpMaster = "tcp{master}", tcpClient = "tcp{client}", tcpServer = "tcp{server}"
        case udpUnconnected = "udp{unconnected}", udpConnected = "udp{connected}"
        case unixMaster = "unixstream{master}", unixClient = "unixstream{client}", unixServer = "unixstream{server}"
        case unixDgramUnconnected = "unixdgram{unconnected}", unixDgramConnected = "unixdgram{connected}"
        /// LuaSec's connection object (`ssl.wrap`): a stream socket with TLS as its transport.
        case tlsConnection = "SSL:Connection"

        var isStream: Bool {
            switch self {
            case .tcpMaster, .tcpClient, .tcpServer, .unixMaster, .unixClient, .unixServer, .tlsConnection: return true
            default: return false
            }
        }
        var isUnix: Bool {
            switch self {
            case .unixMaster, .unixClient, .unixServer, .unixDgramUnconnected, .unixDgramConnected: return true
            default: return false
            }
        }

        /// The class as a member of a `Classes` set.
        var bit: Classes {
            switch self {
            case .tcpMaster: return .tcpMaster
            case .tcpClient: return .tcpClient
            case .tcpServer: return .tcpServer
            case .udpUnconnected: return .udpUnconnected
            case .udpConnected: return .udpConnected
            case .unixMaster: return .unixMaster
            case .unixClient: return .unixClient
            case .unixServer: return .unixServer
            case .unixDgramUnconnected: return .unixDgramUnconnected
            case .unixDgramConnected: return .unixDgramConnected
            case .tlsConnection: return .tlsConnection
            }
        }
    }

    /// A set of classes, checked with one AND on every method call.
    struct Classes: OptionSet {
        let rawValue: UInt16
        static let tcpMaster = Classes(rawValue: 1 << 0), tcpClient = Classes(rawValue: 1 << 1)
        static let tcpServer = Classes(rawValue: 1 << 2), udpUnconnected = Classes(rawValue: 1 << 3)
        static let udpConnected = Classes(rawValue: 1 << 4), unixMaster = Classes(rawValue: 1 << 5)
        static let unixClient = Classes(rawValue: 1 << 6), unixServer = Classes(rawValue: 1 << 7)
        static let unixDgramUnconnected = Classes(rawValue: 1 << 8), unixDgramConnected = Classes(rawValue: 1 << 9)
        static let tlsConnection = Classes(rawValue: 1 << 10)
    }

    enum Direction { case read, write }

    // Every accepted connection has one of these: the stored properties are laid out in
    // the order declared, each at its alignment, so the small ones sit together and no
    // optional scalar is stored (a Double? takes 16 bytes; nil is NaN in a Double here).
    unowned(unsafe) let runtime: Runtime
    @exclusivity(unchecked) private(set) var fd: Int32
    /// AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC until `tcp()`'s first bind or connect.
    var family: Int32 {
        get { Int32(familyNumber) }
        set { familyNumber = UInt8(truncatingIfNeeded: newValue) }
    }
    @exclusivity(unchecked) private var familyNumber: UInt8
    @exclusivity(unchecked) var socketClass: Class
    /// The direction of the socket's last wait (a TLS read may wait to write).
    @exclusivity(unchecked) var parkedDirection: Direction = .read
    /// tcp6()/udp6() sockets keep IPV6_V6ONLY when their descriptor is made again.
    var v6only = false
    /// Whether the last read found the descriptor drained: the next receive then waits
    /// for readiness first instead of probing with a recv that would fail.
    @exclusivity(unchecked) var drained = false
    /// Closed by `close()`: the socket never gets a descriptor again.
    private(set) var wasClosed = false
    /// A listener's: the loop iteration its accept began to wait in (see `accept`).
    @exclusivity(unchecked) var acceptWaitIteration: UInt32 = 0
    /// How the bytes of a stream socket cross the descriptor: nil for the descriptor itself.
    @exclusivity(unchecked) var transport: (any Transport)?
    let reader: IOWatcher
    /// The other watchers, made on first need, out of line: most connections never have one.
    final class MoreWatchers {
        /// For a wait to send.
        var writer: IOWatcher?
        /// TLS only: a receive that must wait until it can write, and a send that must wait
        /// until it can read, each wait on a watcher of their own, so that one fiber may
        /// receive while another sends whatever OpenSSL needs (the crossed WANT_* of SPEC §10).
        var readerWantingWrite: IOWatcher?
        var writerWantingRead: IOWatcher?
    }
    private var moreWatchersIfMade: MoreWatchers?
    private var moreWatchers: MoreWatchers {
        if let moreWatchersIfMade { return moreWatchersIfMade }
        let made = MoreWatchers()
        moreWatchersIfMade = made
        return made
    }
    private var writerIfMade: IOWatcher? {
        get { moreWatchersIfMade?.writer }
        set { moreWatchers.writer = newValue }
    }
    private var readerWantingWriteIfMade: IOWatcher? {
        get { moreWatchersIfMade?.readerWantingWrite }
        set { moreWatchers.readerWantingWrite = newValue }
    }
    private var writerWantingReadIfMade: IOWatcher? {
        get { moreWatchersIfMade?.writerWantingRead }
        set { moreWatchers.writerWantingRead = newValue }
    }

    /// LuaSocket's timeouts as settimeout was given them, which gettimeout returns as they
    /// were (-1: none). Kept inline: servers with an idle timeout set one on every connection.
    var timeoutSettings: (block: Double, total: Double) = (-1, -1)
    /// The timeouts in force: nil (a negative or infinite setting) waits for ever.
    var blockTimeout: Double? { Self.limit(timeoutSettings.block) }
    var totalTimeout: Double? { Self.limit(timeoutSettings.total) }
    @inline(__always)
    private static func limit(_ setting: Double) -> Double? { setting >= 0 && setting.isFinite ? setting : nil }

    // Statistics, as getstats/setstats.
    @exclusivity(unchecked) var received = 0
    @exclusivity(unchecked) var sent = 0
    /// The service whose listener this is, or which accepted this connection (/metrics).
    @exclusivity(unchecked) var metrics: ServiceMetrics?
    var birthday: Double

    /// Bytes received but not yet handed to Lua.
    @exclusivity(unchecked) var buffer = ReceiveBuffer()
    /// The receive in progress: what it is, what it gathered so far and when it must end.
    @exclusivity(unchecked) var reading: Reading = .pattern(.line)
    @exclusivity(unchecked) var receiveAccumulator: [UInt8] = []
    /// Bytes of the accumulator that came from `receive`'s prefix argument.
    var receivePrefixLength = 0
    @NaNForNil var receiveDeadline: Double?
    @NaNForNil var sendDeadline: Double?
    /// Bytes of the current send already written.
    @exclusivity(unchecked) var sendProgress = 0

    /// The state of a socket's client side (connecting, name resolution, pooling,
    /// OpenResty's timeouts), kept out of line so that an accepted connection's socket
    /// stays small; made on first use.
    final class ClientState {
        var operationTimeouts: (connect: Double?, send: Double?, read: Double?)?
        /// The addresses a connect still has to try (after name resolution).
        var connectCandidates: [SocketAddress] = []
        var connectError: SystemError?
        /// The host name or address `connect` was given (what a TLS client verifies).
        var connectHost: String?
        /// setclientcert's certificate chain and key (PEM text or files).
        var clientCertificate: (certificate: String, key: String)?
        var resolveJob: ResolveJob?
        /// Connection-pool bookkeeping (setkeepalive/getreusedtimes).
        var reusedTimes = 0
        var poolKey: String?
    }
    @exclusivity(unchecked) private var clientStateIfMade: ClientState?
    var clientState: ClientState {
        if let clientStateIfMade { return clientStateIfMade }
        let made = ClientState()
        clientStateIfMade = made
        return made
    }

    /// The host `connect` was given, without making the client state.
    var connectHostIfSet: String? { clientStateIfMade?.connectHost }

    /// OpenResty's settimeouts(connect, send, read): when set, each bounds a whole operation.
    /// Read on every operation, so reading it makes no ClientState.
    var operationTimeouts: (connect: Double?, send: Double?, read: Double?)? {
        get { clientStateIfMade?.operationTimeouts }
        set { clientState.operationTimeouts = newValue }
    }

    init(runtime: Runtime, fd: Int32, family: Int32, socketClass: Class) {
        self.runtime = runtime
        self.fd = fd
        familyNumber = UInt8(truncatingIfNeeded: family)
        self.socketClass = socketClass
        reader = IOWatcher(runtime: runtime, fd: max(fd, 0), events: Int32(GS_EV_READ))
        birthday = ev_time()
        runtime.openSockets += 1
        if fd >= 0 { runtime.socketDescriptors.insert(fd) }
    }

    deinit {
        close()
        buffer.release(to: &runtime.spareChunks)
        uncountReceiveMemory()
        runtime.openSockets -= 1
    }

    // MARK: - Receive memory and memory_limit

    /// Bytes of the receive buffer and accumulator counted in the Lua state's memory use,
    /// so that memory_limit bounds what a peer can make a receive hold.
    private var countedReceiveBytes = 0

    /// Counts the receive memory held now; false when that would go past memory_limit
    /// (nothing is counted then).
    func countReceiveMemory() -> Bool {
        let st = runtime.state
        guard st.pointee.limit != 0 || countedReceiveBytes != 0 else { return true }
        let held = buffer.capacity + receiveAccumulator.capacity
        let delta = held - countedReceiveBytes
        if delta > 0 && st.pointee.limit != 0 && st.pointee.used + delta > st.pointee.limit { return false }
        st.pointee.used += delta
        countedReceiveBytes = held
        return true
    }

    private func uncountReceiveMemory() {
        guard countedReceiveBytes != 0 else { return }
        runtime.state.pointee.used -= countedReceiveBytes
        countedReceiveBytes = 0
    }

    /// A receive went past memory_limit: its memory is freed and the connection closed
    /// (the peer's data can no longer be read in order).
    func dropReceiveMemory() {
        receiveAccumulator = []
        buffer.release(to: &runtime.spareChunks)
        uncountReceiveMemory()
        close()
    }

    var isClosed: Bool { fd < 0 }

    /// Gives the socket a new descriptor (the lazily created one of `tcp()`, a pooled
    /// connection, or setfd). The old one, if any, is closed.
    func adopt(fd newFD: Int32, family: Int32) {
        if fd >= 0 && fd != newFD { closeDescriptor() }
        // A transport belongs to the descriptor it was made on (an SSL:Connection keeps its
        // own, closed: its methods say "closed").
        if socketClass != .tlsConnection { transport = nil }
        fd = newFD
        self.family = family
        if newFD >= 0 {
            runtime.socketDescriptors.insert(newFD)
            reader.rebind(fd: newFD)
            writerIfMade?.rebind(fd: newFD)
            readerWantingWriteIfMade?.rebind(fd: newFD)
            writerWantingReadIfMade?.rebind(fd: newFD)
        }
    }

    /// Wakes the fibers blocked on this socket (they see it closed) and closes the descriptor.
    func close() {
        wasClosed = true
        guard fd >= 0 else { return }
        for watcher in [reader, writerIfMade, readerWantingWriteIfMade, writerWantingReadIfMade] {
            if let waiter = watcher?.waiter { runtime.wake(waiter, .ready(0), direct: false) }
        }
        closeDescriptor()
    }

    /// Hands the descriptor over (to the connection pool) without closing it.
    func detachDescriptor() -> Int32 {
        let old = fd
        stopWatchers()
        fd = -1
        buffer.release(to: &runtime.spareChunks)
        _ = countReceiveMemory()
        return old
    }

    private func closeDescriptor() {
        if let m = metrics, socketClass != .tcpServer && socketClass != .unixServer {
            m.connections -= 1
            metrics = nil
        }
        transport?.willClose()
        // A server's accepted connection frees its SSL object now, not when Lua collects the
        // socket: Lua does not see that memory, so closed connections piled up between
        // collections and every handshake touched fresh pages. (An SSL:Connection keeps its
        // own, closed: its methods say "closed".)
        if socketClass != .tlsConnection, let tls = transport as? TLSStream, tls.context.mode == .server {
            transport = nil
        }
        let old = detachDescriptor()
        runtime.descriptorClosing(old)
        runtime.socketDescriptors.remove(old)
        Syscall.close(old)
    }

    private func stopWatchers() {
        ev_io_stop(runtime.loop, reader.io)
        if let writerIfMade { ev_io_stop(runtime.loop, writerIfMade.io) }
        if let readerWantingWriteIfMade { ev_io_stop(runtime.loop, readerWantingWriteIfMade.io) }
        if let writerWantingReadIfMade { ev_io_stop(runtime.loop, writerWantingReadIfMade.io) }
    }

    private var writer: IOWatcher {
        if let writerIfMade { return writerIfMade }
        let made = IOWatcher(runtime: runtime, fd: max(fd, 0), events: Int32(GS_EV_WRITE))
        writerIfMade = made
        return made
    }

    /// Whether a fiber is waiting to send.
    var isSending: Bool { (writerIfMade?.isWaitedOn ?? false) || (writerWantingReadIfMade?.isWaitedOn ?? false) }
    /// Whether a fiber is waiting to receive (or accept, or in a TLS handshake).
    var isReceiving: Bool { reader.isWaitedOn || (readerWantingWriteIfMade?.isWaitedOn ?? false) }

    func watcher(_ direction: Direction) -> IOWatcher { direction == .read ? reader : writer }

    /// The watcher an operation of `operation`'s side waits on for `readiness`: its own,
    /// or for TLS's crossed wants a watcher of its own, apart from the other side's.
    func watcher(for operation: Direction, waitingFor readiness: Direction) -> IOWatcher {
        if operation == readiness { return watcher(readiness) }
        if operation == .read {
            if let readerWantingWriteIfMade { return readerWantingWriteIfMade }
            let made = IOWatcher(runtime: runtime, fd: max(fd, 0), events: Int32(GS_EV_WRITE))
            readerWantingWriteIfMade = made
            return made
        }
        if let writerWantingReadIfMade { return writerWantingReadIfMade }
        let made = IOWatcher(runtime: runtime, fd: max(fd, 0), events: Int32(GS_EV_READ))
        writerWantingReadIfMade = made
        return made
    }

    /// Runs `body` with the runtime, lent without the retain and release that reading
    /// `runtime` costs: the runtime outlives its sockets.
    @inline(__always)
    func withRuntime<R>(_ body: (Runtime) -> R) -> R {
        Unmanaged.passUnretained(runtime)._withUnsafeGuaranteedRef(body)
    }

    // MARK: - The transport

    @inline(__always)
    func transportRead(into buffer: UnsafeMutableRawPointer, count: Int) -> TransportResult {
        if let transport { return transport.read(fd, into: buffer, count: count) }
        return PlainTransport.read(fd, into: buffer, count: count)
    }

    @inline(__always)
    func transportWrite(from bytes: UnsafeRawPointer, count: Int) -> TransportResult {
        if let transport { return transport.write(fd, from: bytes, count: count) }
        return PlainTransport.write(fd, from: bytes, count: count)
    }

    /// Bytes the transport holds for the next read beyond the receive buffer.
    var transportBufferedInput: Int { transport?.bufferedInput ?? 0 }

    /// The deadline of an operation starting now.
    @inline(__always)
    func deadline(for direction: Direction, connecting: Bool = false) -> Double? {
        if totalTimeout == nil && clientStateIfMade == nil { return nil }  // no timeouts set: the usual case
        return timeoutDeadline(for: direction, connecting: connecting)
    }

    private func timeoutDeadline(for direction: Direction, connecting: Bool) -> Double? {
        let limit: Double?
        if let op = operationTimeouts {
            limit = connecting ? op.connect : (direction == .read ? op.read : op.send)
        } else {
            limit = totalTimeout
        }
        guard let limit else { return nil }
        ev_now_update(runtime.loop)
        return ev_now(runtime.loop) + limit
    }

    /// How long the next wait of an operation may last: nil for ever, 0 not at all.
    @inline(__always)
    func waitLimit(deadline: Double?) -> Double? {
        if deadline == nil && clientStateIfMade == nil { return blockTimeout }  // the usual case
        return waitLimitLeft(deadline: deadline)
    }

    private func waitLimitLeft(deadline: Double?) -> Double? {
        var limit = operationTimeouts == nil ? blockTimeout : nil
        if let deadline {
            ev_now_update(runtime.loop)
            let left = max(0, deadline - ev_now(runtime.loop))
            limit = min(limit ?? left, left)
        }
        return limit
    }
}

/// A `Double?` stored in 8 bytes, NaN standing for nil: a `Double?` takes 9, which
/// padding makes 16 in a class. For the socket's timeouts and deadlines, which no
/// caller sets to NaN (settimeout takes negative or nil for none).
@propertyWrapper
struct NaNForNil {
    private var raw: Double

    init(wrappedValue: Double?) { raw = wrappedValue ?? .nan }

    var wrappedValue: Double? {
        get { raw.isNaN ? nil : raw }
        set { raw = newValue ?? .nan }
    }
}
