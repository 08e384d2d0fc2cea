// Lua functions for fibers (SPEC §2): spawn, sleep, join, kill and their state.
// The parts that compose these (get, joinall, pools, ...) are in gsock.lua.
import CLibev
import CLua
import CShims

enum FiberBindings {
    static let metatable = LuaObjectKind.fiber.metatable

    static let functions: [(String, LuaBody)] = [
        ("spawn", spawn), ("spawn_later", spawnLater), ("current", current), ("sleep", sleep),
        ("now", now), ("fiber_dead", dead), ("fiber_successful", successful), ("fiber_id", fiberId),
        ("fiber_error", fiberError), ("fiber_results", results), ("fiber_kill", kill),
        ("fiber_join", join), ("fiber_link", link), ("stats", stats), ("abandon_park", abandonPark),
        ("live_fibers", liveFibers), ("thread_seen", threadSeen),
    ]

    static func register(_ L: LuaState) {
        LuaObjects.register(L, metatable, methods: [])
    }

    /// The fiber whose handle is at `index`.
    static func fiberArg(_ L: LuaState, _ index: Int32) throws(LuaError) -> Fiber {
        try Arg.object(L, index, kind: .fiber, as: Fiber.self, expected: "fiber")
    }

    /// The running fiber; outside one, `what: not called from a fiber` is thrown.
    @inline(__always)
    static func runningFiber(_ L: LuaState, _ what: String) throws(LuaError) -> Fiber {
        guard let fiber = Runtime.from(L).current else { throw .raise(L, "\(what): not called from a fiber") }
        return fiber
    }

    static func isCallable(_ L: LuaState, _ index: Int32) -> Bool {
        if lua_type(L, index) == LUA_TFUNCTION { return true }
        if luaL_getmetafield(L, index, "__call") != LUA_TNIL {
            gs_pop(L, 1)
            return true
        }
        return false
    }

    // MARK: - Spawning

    private static let spawn: LuaBody = { L in luaCall(L, spawn) }
    private static func spawn(_ L: LuaState) throws(LuaError) -> Int32 {
        try Arg.callable(L, 1)
        let rt = Runtime.from(L)
        let fiber = rt.makeFiber(from: L, count: lua_gettop(L))
        rt.enqueue(fiber)
        return 1
    }

    private static let spawnLater: LuaBody = { L in luaCall(L, spawnLater) }
    private static func spawnLater(_ L: LuaState) throws(LuaError) -> Int32 {
        let seconds = try Arg.timeout(L, 1) ?? 0
        try Arg.callable(L, 2)
        lua_rotate(L, 1, -1)
        gs_pop(L, 1)
        let rt = Runtime.from(L)
        let fiber = rt.makeFiber(from: L, count: lua_gettop(L))
        rt.armTimer(fiber.timerWatcher(), seconds)
        return 1
    }

    private static let current: LuaBody = { L in luaCall(L, current) }
    private static func current(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        guard let fiber = rt.current else { return 0 }
        rt.pushHandle(L, fiber)
        return 1
    }

    /// `thread_seen(co)`: Lua code was given the thread `co` (coroutine.running); when it
    /// is the running fiber's own, it is never reused for another fiber.
    private static let threadSeen: LuaBody = { L in luaCall(L) { L throws(LuaError) in
        if let fiber = Runtime.from(L).current, let co = lua_tothread(L, 1), co == fiber.thread {
            fiber.threadSeen = true
        }
        return 0
    } }

    // MARK: - Sleeping

    private static let sleep: LuaBody = { L in luaCall(L, sleep) }
    private static func sleep(_ L: LuaState) throws(LuaError) -> Int32 {
        let seconds = try Arg.timeout(L, 1) ?? 0
        let fiber = try runningFiber(L, "sleep")
        let rt = Runtime.from(L)
        if seconds == 0 {
            return rt.park(L, fiber, on: .yield, timeout: nil, what: "sleep", then: wakeOnly)
        }
        return rt.park(L, fiber, on: .timer, timeout: seconds, what: "sleep", then: wakeOnly)
    }

    /// Continuation of waits that return nothing and raise only an error delivered to them.
    static let wakeOnly: LuaBody = { L in luaCall(L, wakeOnly) }
    private static func wakeOnly(_ L: LuaState) throws(LuaError) -> Int32 {
        _ = try Runtime.from(L).woken(L)
        return 0
    }

    private static let now: LuaBody = { L in luaCall(L, now) }
    private static func now(_ L: LuaState) throws(LuaError) -> Int32 {
        let loop = Runtime.from(L).loop
        ev_now_update(loop)
        lua_pushnumber(L, ev_now(loop))
        return 1
    }

    // MARK: - State

    private static let dead: LuaBody = { L in luaCall(L, dead) }
    private static func dead(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        lua_pushboolean(L, fiber.state == .dead ? 1 : 0)
        return 1
    }

    private static let successful: LuaBody = { L in luaCall(L, successful) }
    private static func successful(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        lua_pushboolean(L, fiber.state == .dead && fiber.successful ? 1 : 0)
        return 1
    }

    private static let fiberId: LuaBody = { L in luaCall(L, fiberId) }
    private static func fiberId(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        lua_pushinteger(L, lua_Integer(fiber.id))
        return 1
    }

    private static let fiberError: LuaBody = { L in luaCall(L, fiberError) }
    private static func fiberError(_ L: LuaState) throws(LuaError) -> Int32 {
        _ = try fiberArg(L, 1)
        lua_getiuservalue(L, 1, 2)
        return 1
    }

    /// `true, results...` for a fiber that returned, `false, error` for one that raised.
    private static let results: LuaBody = { L in luaCall(L, results) }
    private static func results(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        guard fiber.state == .dead else { throw .raise(L, "the fiber has not ended") }
        guard fiber.successful else {
            lua_pushboolean(L, 0)
            lua_getiuservalue(L, 1, 2)
            return 2
        }
        lua_pushboolean(L, 1)
        guard lua_getiuservalue(L, 1, 1) == LUA_TTABLE else { return 1 }
        let t = lua_gettop(L)
        luaRawGetField(L, t, "n")
        // Lua code can replace the results table (debug.setuservalue): n is not trusted.
        let count = lua_tointegerx(L, -1, nil)
        gs_pop(L, 1)
        guard count >= 0, count < 1_000_000 else { throw .raise(L, "too many results") }
        let n = Int32(count)
        guard lua_checkstack(L, n + 2) != 0 else { throw .raise(L, "too many results") }
        if n > 0 { for i in 1...n { lua_rawgeti(L, t, lua_Integer(i)) } }
        lua_rotate(L, t, -1)
        gs_pop(L, 1)
        return n + 1
    }

    // MARK: - Kill and join

    /// `fiber_kill(f [, err])`: raises `err` (default: a "killed" error) in `f` at its wait point.
    private static let kill: LuaBody = { L in luaCall(L, kill) }
    private static func kill(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        guard fiber.state != .dead else { return 0 }
        lua_settop(L, 2)
        if luaIsNoneOrNil(L, 2) {
            gs_pop(L, 1)
            ErrorValues.push(L, .killed, "killed")
        }
        fiber.killed = true
        let rt = Runtime.from(L)
        if fiber === rt.current { throw .value }
        rt.interrupt(fiber, error: luaRef(L))
        return 0
    }

    /// `fiber_join(f [, timeout])` → true when it ended, false on timeout.
    private static let join: LuaBody = { L in luaCall(L, join) }
    private static func join(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        let timeout = try Arg.timeout(L, 2)
        if fiber.state == .dead {
            lua_pushboolean(L, 1)
            return 1
        }
        let me = try runningFiber(L, "join")
        if me === fiber { throw .raise(L, "join: a fiber cannot join itself") }
        if timeout == 0 {
            lua_pushboolean(L, 0)
            return 1
        }
        let list = fiber.joiners ?? WaitList()
        fiber.joiners = list
        return Runtime.from(L).park(L, me, on: .list(list), timeout: timeout, what: "join", then: notifiedOrTimedOut)
    }

    /// Continuation of list waits: true when notified, false when timed out.
    static let notifiedOrTimedOut: LuaBody = { L in luaCall(L, notifiedOrTimedOut) }
    private static func notifiedOrTimedOut(_ L: LuaState) throws(LuaError) -> Int32 {
        if case .timedOut = try Runtime.from(L).woken(L) { lua_pushboolean(L, 0) } else { lua_pushboolean(L, 1) }
        return 1
    }

    /// `fiber_link(f, fn)`: calls fn(f) when f ends. Returns false if it has ended already.
    private static let link: LuaBody = { L in luaCall(L, link) }
    private static func link(_ L: LuaState) throws(LuaError) -> Int32 {
        let fiber = try fiberArg(L, 1)
        try Arg.callable(L, 2)
        guard fiber.state != .dead else {
            lua_pushboolean(L, 0)
            return 1
        }
        // One linked function (the common case: a server's or a pool's) is kept as it
        // is; otherwise a list holds them (callable tables go in a list from the start).
        if fiber.linksRef == LUA_NOREF && lua_type(L, 2) == LUA_TFUNCTION {
            lua_pushvalue(L, 2)
            fiber.linksRef = luaRef(L)
        } else {
            if fiber.linksRef == LUA_NOREF {
                lua_createtable(L, 1, 0)
                fiber.linksRef = luaRef(L)
            }
            luaPushRef(L, fiber.linksRef)
            if lua_type(L, -1) == LUA_TFUNCTION {
                lua_createtable(L, 2, 0)
                lua_rotate(L, -2, 1)
                lua_rawseti(L, -2, 1)
                luaUnref(L, fiber.linksRef)
                lua_pushvalue(L, -1)
                fiber.linksRef = luaRef(L)
            }
            lua_pushvalue(L, 2)
            lua_rawseti(L, -2, lua_Integer(lua_rawlen(L, -2) + 1))
        }
        lua_pushboolean(L, 1)
        return 1
    }

    private static let stats: LuaBody = { L in luaCall(L, stats) }
    private static func stats(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        // fiber_objects leaves out the dead fibers kept for reuse with idle threads.
        let kept = rt.idleThreads.reduce(0) { $0 + ($1.fiber == nil ? 0 : 1) }
        let counts = [("fibers", rt.liveFibers), ("fiber_objects", rt.fiberObjects - kept), ("memory", rt.memoryInUse),
                      ("bytes_in", rt.bytesIn), ("bytes_out", rt.bytesOut), ("errors", rt.failuresLogged),
                      ("sockets", rt.openSockets), ("tls_handshakes", rt.tlsHandshakes),
                      ("tls_handshake_failures", rt.tlsHandshakeFailures), ("tls_resumptions", rt.tlsResumptions),
                      ("tls_connections", TLSStream.live.load(ordering: .relaxed)),
                      ("http_requests", rt.httpRequests), ("http_rejected", rt.httpRejected),
                      ("http_connections", rt.httpConnections)]
        lua_createtable(L, 0, Int32(counts.count) + 2)  // server.lua adds connections and accepted
        for (name, value) in counts {
            lua_pushinteger(L, lua_Integer(value))
            luaRawSetField(L, -2, name)
        }
        return 1
    }

    /// `live_fibers()` → the handles of every fiber not yet dead, newest first (the test
    /// runner finds the fibers a test left running with it).
    static let liveFibers: LuaBody = { L in luaCall(L, liveFibers) }
    private static func liveFibers(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        lua_checkstack(L, 3)
        lua_createtable(L, Int32(clamping: rt.liveFibers), 0)
        var i: lua_Integer = 0
        var next = rt.liveHead
        while let fiber = next {
            i += 1
            rt.pushHandle(L, fiber)
            lua_rawseti(L, -2, i)
            next = fiber.liveNext
        }
        return 1
    }

    /// Gives up the wait of the running fiber (see Runtime.abandonPark).
    private static let abandonPark: LuaBody = { L in luaCall(L, abandonPark) }
    private static func abandonPark(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        if let fiber = rt.current { rt.abandonPark(fiber) }
        return 0
    }
}

extension Arg {
    /// A function, or a value with `__call`: "function expected, got T" otherwise.
    static func callable(_ L: LuaState, _ i: Int32) throws(LuaError) {
        guard FiberBindings.isCallable(L, i) else { throw .type(L, i, "function") }
    }
}

/// What a wait's continuation does with the wake.
enum WakeOutcome {
    case raise(Int32)            ///< return this status: an error was delivered
    case woken(Fiber.Wake)       ///< a normal end: ready, notified or timed out
}

extension Runtime {
    /// Reads and clears the running fiber's wake. An error delivered to it (kill,
    /// gsock.timeout, cancel_wait) is pushed for raising; so is the wait's own
    /// timeout value when the caller passes `raiseTimeout`.
    func takeWake(_ L: LuaState, raiseTimeout: Bool = false) -> WakeOutcome {
        withCurrent { takeWake(L, of: $0, raiseTimeout: raiseTimeout) }
            ?? .raise(luaRaise(L, "wait resumed outside its fiber"))
    }

    /// takeWake with the error thrown: the wake of a normal end (ready, notified or timed out).
    @inline(__always)
    func woken(_ L: LuaState, raiseTimeout: Bool = false) throws(LuaError) -> Fiber.Wake {
        switch takeWake(L, raiseTimeout: raiseTimeout) {
        case .raise(let status): throw LuaError(status: status)
        case .woken(let wake): return wake
        }
    }

    private func takeWake(_ L: LuaState, of fiber: Fiber, raiseTimeout: Bool) -> WakeOutcome {
        let wake = fiber.wake
        fiber.wake = .none
        let timeoutValue = fiber.timeoutValueRef
        fiber.timeoutValueRef = LUA_NOREF
        switch wake {
        case .error(let ref):
            luaUnref(self.L, timeoutValue)
            luaPushRef(L, ref)
            luaUnref(self.L, ref)
            return .raise(LuaStatus.raise)
        case .abandoned:
            luaUnref(self.L, timeoutValue)
            return .raise(luaRaise(L, "this wait was abandoned: it could not be passed out of a coroutine"))
        case .timedOut where raiseTimeout:
            if timeoutValue != LUA_NOREF {
                luaPushRef(L, timeoutValue)
                luaUnref(self.L, timeoutValue)
            } else {
                ErrorValues.pushTimeout(L)
            }
            return .raise(LuaStatus.raise)
        default:
            luaUnref(self.L, timeoutValue)
            return .woken(wake)
        }
    }

    /// Pushes a new handle for `fiber`: a userdata with two user values (the thread or
    /// the results, and the error).
    func pushNewHandle(_ L: LuaState, _ fiber: Fiber) {
        LuaObjects.push(L, fiber, kind: .fiber, userValues: 2)
    }
}
