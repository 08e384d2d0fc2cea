// The runtime: one libev loop, one Lua state, and the fibers that run in it.
//
// This file holds the runtime's state and its life cycle; its face for Swift programs
// (SPEC §8) is in Embedding/, the scheduler in Runtime+Scheduling.swift, the Lua API in
// Bindings/.
import CLibev
import CLua
import CShims
import Glibc
import Logging

/// A gsockd runtime: an event loop and a Lua 5.4 state whose code runs in fibers.
///
/// A runtime belongs to the thread that created it; it is not `Sendable`.
public final class Runtime {
    // MARK: The Lua state and the loop

    let L: LuaState
    let loop: OpaquePointer
    let state: UnsafeMutablePointer<gs_state>
    let ownsLoop: Bool
    var logger: Logger
    /// Registry reference of the `gsock` module table.
    var moduleRef: Int32 = LUA_NOREF
    /// Whether the metatable of registered Swift functions exists (Runtime+Modules.swift).
    var boxMetatableRegistered = false
    /// Whether the watchdog watches this runtime's fibers (see Options.maxRunTime).
    var watchesRunaways = false

    // MARK: The scheduler

    /// The fiber whose Lua code is running, nil at loop level.
    // The scheduler's hot fields: one thread, and no access to them is ever held across
    // a call, so Swift's dynamic exclusivity checks are turned off for them. `current`
    // is set only by `resume`, whose caller holds the fiber: it needs no retain, and the
    // hot paths borrow it (`withCurrent`) rather than read it, which would retain it.
    var current: Fiber? {
        get { currentRef?.takeUnretainedValue() }
        set { currentRef = newValue.map { Unmanaged.passUnretained($0) } }
    }
    @exclusivity(unchecked) private var currentRef: Unmanaged<Fiber>?
    @exclusivity(unchecked) var ready: ReadyQueue
    /// Fibers parked on bare descriptors (wait_read, gsock.wait, select), by descriptor, so
    /// that a socket's close wakes them (`descriptorClosing`) instead of leaving a watcher
    /// on a number the next socket may get.
    var descriptorWaiters: [Int32: [Fiber]] = [:]
    var mainRun = MainRun()
    var nextFiberId = 1
    /// The live fibers, linked through `Fiber.liveNext` (`writeDump`, `close`).
    var liveHead: Fiber?
    /// Every live fiber's thread sits in a slot of one Lua table (a registry reference),
    /// which anchors it. The slot of a fiber that ended normally keeps its thread for the
    /// next fiber (`idleThreads`, at most `threadPoolLimit`), so that a server starting
    /// a fiber per request neither makes and collects a Lua thread nor takes a registry
    /// reference per request.
    var threadsRef = LUA_NOREF
    @exclusivity(unchecked) var threadSlots: Int32 = 0
    @exclusivity(unchecked) var idleThreads: [IdleThread] = []
    @exclusivity(unchecked) var freeThreadSlots: [Int32] = []
    static let threadPoolLimit = 64

    // MARK: Counters (gsock.stats)

    /// Fibers not yet dead.
    var liveFibers = 0
    /// Fiber objects in memory (live fibers, dead ones whose handles are still referenced,
    /// and the dead ones kept with idle threads, `IdleThread.fiber`).
    var fiberObjects = 0
    /// Fiber failures logged.
    var failuresLogged = 0
    /// Bytes received and sent by sockets.
    var bytesIn = 0
    var bytesOut = 0
    /// TLS handshakes that finished, failed (or timed out), and resumed a session.
    var tlsHandshakes = 0, tlsHandshakeFailures = 0, tlsResumptions = 0
    /// The newest TLS session of client connections, by pool key (address, context settings,
    /// server name): a connection to the same key resumes it (Socket.beginClientTLS).
    var clientSessions: [String: TLSSession] = [:]
    /// HTTP requests started, heads refused with an error status, connections held.
    var httpRequests = 0, httpRejected = 0, httpConnections = 0
    /// Registry references to http.lua's response metatable, the response's key of its
    /// connection and its `describe` (host.http_response_setup), for the requests whose
    /// handler the host runs itself (HTTPConnection).
    var httpResponseRefs = (metatable: LUA_NOREF, connectionKey: LUA_NOREF, describe: LUA_NOREF)
    /// http.lua's request metatable (HTTPRequestObject.pushMetatable).
    var httpRequestMetatableRef = LUA_NOREF
    /// Sockets in memory (open or not yet collected).
    var openSockets = 0
    /// The descriptors socket objects and the connection pool hold: setfd may not give a
    /// socket one of them (two owners: one's close pulls it from under the other's
    /// watcher, and libev aborts the process on the EBADF).
    var socketDescriptors = Set<Int32>()
    /// The peer of the connection the last accept took, packed as gs_accept packs it (an
    /// IPv4 peer; 0 otherwise): read by `_accept` right after, so that a server knows its
    /// peer without a getpeername.
    var acceptedPeer: UInt64 = 0
    /// Per-service figures, loop lag and runaways, for the admin listener (Operating/Metrics.swift).
    let metrics = RuntimeMetrics()

    // MARK: What sockets share

    /// Whether sockets enter the registry of open resources (the test runner sets it).
    var tracksResources = false
    /// Receive-buffer chunks that sockets gave back, for the next to take.
    @exclusivity(unchecked) var spareChunks = SpareChunks()
    /// Idle client connections by "host:port" (setkeepalive).
    var connectionPool: [String: [PooledConnection]] = [:]
    var poolSweep: UnsafeMutablePointer<ev_timer>?
    let resolver: Resolver
    /// The characters of the interned strings "*l" and "*a", anchored in the registry so
    /// that they stay at these addresses: `receive` recognises its usual patterns by address.
    @exclusivity(unchecked) private(set) var linePatternName: UnsafePointer<CChar>?
    @exclusivity(unchecked) private(set) var allPatternName: UnsafePointer<CChar>?
    /// Registry reference of "": pushing it from there skips the lookup in Lua's string
    /// cache (a strcmp) that creating it costs.
    @exclusivity(unchecked) private(set) var emptyStringRef: Int32 = LUA_NOREF

    // MARK: Signals (on_signal)

    /// The Lua function that receives signals, and the watchers.
    var signalHandlerRef: Int32 = LUA_NOREF
    var signalWatchers: [UnsafeMutablePointer<ev_signal>] = []

    private var closed = false

    /// Creates a runtime with the standard Lua libraries and the `gsock` module loaded.
    /// - Throws: `RuntimeError.setup` if Lua cannot be initialised.
    public init(options: Options = Options()) throws {
        // As LuaSocket's socket.core does when it loads (usocket.c, socket_open): a write
        // to a pipe or socket whose reader is gone gives EPIPE, and does not kill the
        // process (io.stdout on a descriptor a script closed and another pipe reused,
        // found by the argument fuzzer's seed 59943). Sockets send with MSG_NOSIGNAL anyway.
        signal(SIGPIPE, SIG_IGN)
        logger = options.logger
        state = .allocate(capacity: 1)
        state.initialize(to: gs_state(used: 0, limit: 0, swift_depth: 1, arg: 0, kont: nil, runtime: nil,
                                      running: nil, resumes: 0, running_since: 0, runaway_stopped: 0, runaways: 0,
                                      pool: nil))
        guard let L = gs_newstate(state) else {
            state.deallocate()
            throw RuntimeError.setup("cannot create a Lua state")
        }
        self.L = L
        if options.useDefaultLoop {
            loop = gs_default_loop()
            ownsLoop = false
        } else {
            loop = ev_loop_new(UInt32(EVFLAG_AUTO))
            ownsLoop = true
        }
        ready = ReadyQueue()
        resolver = Resolver(loop: loop)
        state.pointee.runtime = Unmanaged.passUnretained(self).toOpaque()

        gs_idle_init(ready.idle, { _, _, _ in })
        gs_check_init(ready.check, readyQueueCheck)
        ready.check.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        // After every other callback of the iteration, so fibers they wake run in the same
        // one. Always started: a check watcher started by a callback is first queued in the
        // next iteration, after a poll that the idle watcher makes non-blocking, which cost
        // an epoll_wait per batch of requests. Unreferenced: it keeps no loop running.
        gs_set_priority(ready.check, Int32(GS_EV_MINPRI))
        ev_check_start(loop, ready.check)
        ev_unref(loop)
        resolver.attach(self)

        gs_pushcfunction(L, gs_openlibs)
        guard gs_pcall(L, 0, 0, 0) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        lua_createtable(L, Int32(Runtime.threadPoolLimit), 0)
        threadsRef = luaRef(L)
        try openModule()
        linePatternName = anchoredString("*l")
        allPatternName = anchoredString("*a")
        lua_pushstring(L, "")
        emptyStringRef = luaRef(L)
        state.pointee.limit = options.memoryLimit
        if let limit = options.maxRunTime, options.useDefaultLoop {
            watchesRunaways = gs_watchdog_start(state, limit, options.runawayAction == .error ? Int32(GS_RUNAWAY_ERROR)
                                                : Int32(GS_RUNAWAY_LOG), runawayReported) == 0
        }
    }

    deinit { close() }

    /// Abandons every fiber, closes the Lua state and frees the loop. Called by deinit.
    public func close() {
        guard !closed else { return }
        closed = true
        while let fiber = liveHead {
            unlinkLive(fiber)
            // lua_close below finalises sockets and fiber handles in no set order: a socket
            // closed after the handle of a fiber parked on it must not find that fiber.
            if fiber.state == .parked { detach(fiber) }
            fiber.releaseWatchers()
            fiber.state = .dead
        }
        idleThreads.removeAll()
        ev_idle_stop(loop, ready.idle)
        if gs_is_active(ready.check) != 0 {
            ev_ref(loop)
            ev_check_stop(loop, ready.check)
        }
        stopWatchingSignals()
        stopLagSampler()
        gs_closestate(L, state)
        spareChunks.removeAll()
        stopPoolSweep()
        connectionPool.values.forEach { $0.forEach { Syscall.close($0.fd) } }
        resolver.close()
        ready.deallocateWatchers()
        if ownsLoop { ev_loop_destroy(loop) }
        state.deallocate()
    }

    /// Pushes `text` and anchors it in the registry for the runtime's life; returns its characters.
    private func anchoredString(_ text: String) -> UnsafePointer<CChar>? {
        lua_pushstring(L, text)
        let p = lua_tolstring(L, -1, nil)
        _ = luaRef(L)
        return p
    }

    /// Whether a fiber is running (reading `current` would retain it).
    var isInFiber: Bool { currentRef != nil }

    /// Runs `body` with the running fiber, lent without a retain; nil at loop level.
    @inline(__always)
    func withCurrent<R>(_ body: (Fiber) -> R) -> R? {
        currentRef?._withUnsafeGuaranteedRef(body)
    }

    static func from(_ L: LuaState) -> Runtime {
        Unmanaged<Runtime>.fromOpaque(L.gsState.pointee.runtime!).takeUnretainedValue()
    }

    /// Pops the value on top of the main stack and returns it as text (through __tostring).
    func popMessage() -> String {
        gs_pushcfunction(L, gs_tostring)
        lua_rotate(L, -2, 1)
        if gs_pcall(L, 1, 1, 0) != LUA_OK {
            gs_pop(L, 1)
            return "(error object cannot be converted to a string)"
        }
        let s = luaString(L, -1) ?? "(error object is not a string)"
        gs_pop(L, 1)
        return s
    }
}

private func runawayReported(_ L: LuaState?, _ traceback: UnsafePointer<CChar>?) {
    let runtime = Runtime.from(L!)
    let fiber = runtime.current.map { "\($0.id)" } ?? "?"
    runtime.logger.warning("fiber \(fiber) \(traceback.map { String(cString: $0) } ?? "")", metadata: ["fiber": "\(fiber)"])
}

private func readyQueueCheck(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_check>?, _ revents: Int32) {
    let runtime = Unmanaged<Runtime>.fromOpaque(w!.pointee.data).takeUnretainedValue()
    runtime.runReady()
}
