// The process-level functions a server needs: signals (SIGTERM, SIGINT and SIGHUP are
// handed to a Lua function in a new fiber; SIGUSR1 writes the fiber dump), and
// `gsock.dump()`, the "what is every fiber waiting on" view (SPEC §9).
import CLibev
import CLua
import CShims
import Glibc

enum ProcessBindings {
    static let functions: [(String, LuaBody)] = [
        ("on_signal", onSignal), ("dump", dump), ("getpid", getpid), ("notify", notify),
        ("watchdog_interval", watchdogInterval), ("file_identity", fileIdentity),
        ("worker_ready", workerReady),
    ]

    /// `file_identity(path)` → kind ("socket", "file", "directory", "other"), "dev:ino";
    /// or nil and the reason. lstat: a link is not followed.
    static let fileIdentity: LuaBody = { L in luaCall(L, fileIdentity) }
    private static func fileIdentity(_ L: LuaState) throws(LuaError) -> Int32 {
        switch FileIdentity.of(try Arg.string(L, 1)) {
        case .failure(let e):
            lua_pushnil(L)
            lua_pushstring(L, e.message)
        case .success(let identity):
            lua_pushstring(L, identity.kind.rawValue)
            lua_pushstring(L, identity.id)
        }
        return 2
    }

    /// What a server needs from the supervisor of a worker (WorkerChannel): each does
    /// nothing and returns nil in a process that is no worker.
    static let listenerSharing: [(String, LuaBody)] = [
        ("shared_listener", sharedListener), ("share_listener", shareListener),
        ("adopt_listener", SocketBindings.adoptListener),
    ]

    /// `shared_listener(address)` → the descriptor of the supervisor's listener on
    /// `address` (a new one, this process's to close), or of the one systemd passed
    /// (SocketActivation), or nil when there is none.
    private static let sharedListener: LuaBody = { L in luaCall(L, sharedListener) }
    private static func sharedListener(_ L: LuaState) throws(LuaError) -> Int32 {
        let address = try Arg.string(L, 1)
        if let fd = SocketActivation.takeListener(address) {
            lua_pushinteger(L, lua_Integer(fd))
            return 1
        }
        guard let answer = WorkerChannel.request("get \(address)"), answer.fd >= 0 else { return 0 }
        lua_pushinteger(L, lua_Integer(answer.fd))
        return 1
    }

    /// `share_listener(address, fd [, identity])`: hands the supervisor a listener this
    /// worker bound (and, for a unix socket, its file's identity: the supervisor removes
    /// the file at the end); true when the supervisor keeps it.
    private static let shareListener: LuaBody = { L in luaCall(L, shareListener) }
    private static func shareListener(_ L: LuaState) throws(LuaError) -> Int32 {
        let address = try Arg.string(L, 1)
        let fd = Int32(try Arg.integer(L, 2, in: 0...Int(Int32.max)))
        let identity = luaString(L, 3) ?? ""
        let answer = WorkerChannel.request("put \(address)\t\(identity)", passing: fd)
        lua_pushboolean(L, answer?.reply == "ok" ? 1 : 0)
        return 1
    }

    /// `worker_ready()`: tells the supervisor this worker serves (after a start or a reload).
    private static let workerReady: LuaBody = { L in
        _ = WorkerChannel.request("ready")
        return 0
    }

    static let handledSignals: [(Int32, String)] = [(SIGTERM, "TERM"), (SIGINT, "INT"), (SIGHUP, "HUP"), (SIGUSR1, "USR1")]

    /// `on_signal(fn)`: from now on fn(name) runs in a new fiber on SIGTERM, SIGINT and
    /// SIGHUP; SIGUSR1 writes the dump. Only the default loop can watch signals.
    private static let onSignal: LuaBody = { L in luaCall(L, onSignal) }
    private static func onSignal(_ L: LuaState) throws(LuaError) -> Int32 {
        try Arg.callable(L, 1)
        let rt = Runtime.from(L)
        guard !rt.ownsLoop else { throw .raise(L, "on_signal: signals are watched only by a runtime on the default loop") }
        lua_pushvalue(L, 1)
        luaUnref(L, rt.signalHandlerRef)
        rt.signalHandlerRef = luaRef(L)
        rt.watchSignals()
        return 0
    }

    private static let dump: LuaBody = { L in luaCall(L, dump) }
    private static func dump(_ L: LuaState) throws(LuaError) -> Int32 {
        Runtime.from(L).writeDump()
        return 0
    }

    /// `notify(state)`: sends "READY=1" and the like to systemd (NOTIFY_SOCKET); true if sent.
    private static let notify: LuaBody = { L in luaCall(L, notify) }
    private static func notify(_ L: LuaState) throws(LuaError) -> Int32 {
        let state = try Arg.string(L, 1)
        lua_pushboolean(L, SystemdNotifier.fromEnvironment.notify(state) ? 1 : 0)
        return 1
    }

    /// `watchdog_interval()`: the seconds systemd wants WATCHDOG=1 within, or nil.
    private static let watchdogInterval: LuaBody = { L in luaCall(L, watchdogInterval) }
    private static func watchdogInterval(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let s = SystemdNotifier.fromEnvironment.watchdogInterval else { return 0 }
        lua_pushnumber(L, s)
        return 1
    }

    private static let getpid: LuaBody = { L in
        lua_pushinteger(L!, lua_Integer(Glibc.getpid()))
        return 1
    }
}

extension Runtime {
    func watchSignals() {
        guard signalWatchers.isEmpty else { return }
        for (signum, _) in ProcessBindings.handledSignals {
            let w = UnsafeMutablePointer<ev_signal>.allocate(capacity: 1)
            gs_signal_init(w, signalReceived, signum)
            w.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            ev_signal_start(loop, w)
            ev_unref(loop)  // watching signals alone does not keep the loop running
            signalWatchers.append(w)
        }
    }

    func stopWatchingSignals() {
        for w in signalWatchers {
            ev_ref(loop)
            ev_signal_stop(loop, w)
            w.deallocate()
        }
        signalWatchers.removeAll()
    }

    fileprivate func deliver(signal signum: Int32) {
        if signum == SIGUSR1 {
            writeDump()
            return
        }
        guard signalHandlerRef != LUA_NOREF,
              let name = ProcessBindings.handledSignals.first(where: { $0.0 == signum })?.1 else { return }
        lua_checkstack(L, 3)
        luaPushRef(L, signalHandlerRef)
        lua_pushstring(L, name)
        let fiber = makeFiber(from: L, count: 2)
        gs_pop(L, 1)
        enqueue(fiber)
    }

    /// Writes every live fiber, what it waits on and its Lua traceback to stderr.
    public func writeDump() {
        let text = dumpText()
        _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    /// The dump: a line per live fiber, what it waits on, then its traceback indented.
    func dumpText() -> String {
        var text = "gsockd: fiber dump (pid \(getpid())): \(liveFibers) fibers\n"
        for entry in dumpEntries() {
            text += "fiber \(entry.id) [\(entry.state)]\(entry.running ? " (running)" : ""): \(entry.waiting)\n"
            text += entry.traceback.map { "    \($0)\n" }.joined()
        }
        return text
    }

    /// The dump as JSON: {"pid":..,"fibers":[{"id","state","running","waiting","traceback":[..]}]}.
    func dumpJSON() -> String {
        let fibers = dumpEntries().map { e in
            "{\"id\":\(e.id),\"state\":\(jsonString("\(e.state)")),\"running\":\(e.running),"
                + "\"waiting\":\(jsonString(e.waiting)),\"traceback\":[\(e.traceback.map(jsonString).joined(separator: ","))]}"
        }
        return "{\"pid\":\(getpid()),\"fibers\":[\(fibers.joined(separator: ","))]}\n"
    }

    private func dumpEntries() -> [(id: Int, state: Fiber.State, running: Bool, waiting: String, traceback: [String])] {
        var entries: [(id: Int, state: Fiber.State, running: Bool, waiting: String, traceback: [String])] = []
        var fiber = liveHead
        lua_checkstack(L, 4)
        while let f = fiber {
            var lines: [String] = []
            if f !== current {
                gs_pushcfunction(L, gs_traceback)
                lua_pushthread(f.thread)
                lua_xmove(f.thread, L, 1)
                lua_pushstring(L, "")
                if gs_pcall(L, 2, 1, 0) == LUA_OK, let tb = luaString(L, -1) {
                    lines = tb.split(separator: "\n").dropFirst().map { String($0.drop { $0 == "\t" }) }
                }
                gs_pop(L, 1)
            }
            entries.append((f.id, f.state, f === current, f.waitDescription, lines))
            fiber = f.liveNext
        }
        return entries
    }
}

extension Fiber {
    /// What the fiber waits on, for the dump.
    var waitDescription: String {
        switch state {
        case .created: return "waiting to start (spawn_later)"
        case .ready: return hasStarted ? "ready to run" : "not started"
        case .running: return "running"
        case .dead: return "dead"
        case .parked: break
        }
        var timeout = ""
        if let timer, gs_is_active(timer) != 0 {
            let ms = Int(clamping: Int64(exactly: min((ev_timer_remaining(runtime.loop, timer) * 1000).rounded(), 1e15)) ?? 0)
            timeout = ", timeout in \(ms) ms"
        }
        switch site {
        case .io(let w): return "fd \(w.fd) (\(w.events == Int32(GS_EV_READ) ? "read" : w.events == Int32(GS_EV_WRITE) ? "write" : "read/write"))\(timeout)"
        case .rawIO: return "fd \(rawIO.map { $0.pointee.fd } ?? -1)\(timeout)"
        case .timer: return "timer (sleep)\(timeout)"
        case .list: return "an event, queue, lock or join\(timeout)"
        case .yield: return "its turn (sleep(0))"
        case .resolve: return "a name lookup"
        case .select: return "socket.select\(timeout)"
        case .none: return "nothing\(timeout)"
        }
    }
}

private func signalReceived(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_signal>?, _ revents: Int32) {
    let runtime = Unmanaged<Runtime>.fromOpaque(w!.pointee.data).takeUnretainedValue()
    runtime.deliver(signal: w!.pointee.signum)
}
