// Waiting on descriptors (SPEC §3: gevent.socket's wait_read, wait_write,
// wait_readwrite, wait and cancel_wait), timeouts, and the wait lists that
// gsock.lua builds events, queues, semaphores and pools from.
import CLibev
import CLua
import CShims
import Glibc

enum WaitBindings {
    static let watcherMetatable = LuaObjectKind.watcher.metatable
    static let waitListMetatable = LuaObjectKind.waitList.metatable
    static let timeoutMetatable = LuaObjectKind.timeout.metatable

    static let functions: [(String, LuaBody)] = [
        ("wait_read", waitRead), ("wait_write", waitWrite), ("wait_readwrite", waitReadWrite),
        ("io", newWatcher), ("wait", wait), ("cancel_wait", cancelWait),
        ("waitlist", newWaitList), ("timeout", newTimeout),
    ]
    static let fdFunctions: Set<String> = ["wait_read", "wait_write", "wait_readwrite", "io"]

    static func register(_ L: LuaState) {
        LuaObjects.register(L, watcherMetatable, methods: [("close", closeWatcher), ("getfd", watcherFd)],
                            extra: [("__close", closeWatcher)])
        LuaObjects.register(L, waitListMetatable, methods: [
            ("wait", listWait), ("notify", listNotify), ("notify_all", listNotifyAll), ("waiting", listWaiting),
        ])
        LuaObjects.register(L, timeoutMetatable, methods: [("cancel", cancelTimeout), ("pending", timeoutPending)],
                            extra: [("__close", cancelTimeout)])
    }

    // MARK: - Waiting on a bare descriptor

    private static let waitRead: LuaBody = { L in luaCall(L, waitRead) }
    private static let waitWrite: LuaBody = { L in luaCall(L, waitWrite) }
    private static let waitReadWrite: LuaBody = { L in luaCall(L, waitReadWrite) }

    private static func waitRead(_ L: LuaState) throws(LuaError) -> Int32 {
        try waitOnDescriptor(L, Int32(GS_EV_READ), "wait_read")
    }
    private static func waitWrite(_ L: LuaState) throws(LuaError) -> Int32 {
        try waitOnDescriptor(L, Int32(GS_EV_WRITE), "wait_write")
    }
    private static func waitReadWrite(_ L: LuaState) throws(LuaError) -> Int32 {
        try waitOnDescriptor(L, Int32(GS_EV_READ) | Int32(GS_EV_WRITE), "wait_readwrite")
    }

    private static func waitOnDescriptor(_ L: LuaState, _ events: Int32, _ what: String) throws(LuaError) -> Int32 {
        let fd = try Arg.integer(L, 1)
        let timeout = try Arg.timeout(L, 2)
        let fiber = try FiberBindings.runningFiber(L, what)
        if let error = WaitableDescriptor.refusal(fd) { throw ErrorValues.errnoError(L, error) }
        _ = fiber.rawIOWatcher(fd: Int32(fd), events: events)
        fiber.timeoutValueRef = timeoutValueArg(L, 3)
        return Runtime.from(L).park(L, fiber, on: .rawIO, timeout: timeout, what: what, then: ioWaitDone)
    }

    /// `timeout_exc` anchored for the wait, or LUA_NOREF for the default error.
    private static func timeoutValueArg(_ L: LuaState, _ index: Int32) -> Int32 {
        guard !luaIsNoneOrNil(L, index) else { return LUA_NOREF }
        lua_pushvalue(L, index)
        return luaRef(L)
    }

    /// Continuation of descriptor waits: returns nothing, or raises.
    private static let ioWaitDone: LuaBody = { L in luaCall(L, ioWaitDone) }
    private static func ioWaitDone(_ L: LuaState) throws(LuaError) -> Int32 {
        switch try Runtime.from(L).woken(L, raiseTimeout: true) {
        case .ready(let revents) where revents & Int32(GS_EV_CLOSED) != 0:
            // A socket of this runtime closed the descriptor.
            throw ErrorValues.cancelledError(L)
        case .ready(let revents) where revents & Int32(GS_EV_ERROR) != 0:
            // libev could not watch the descriptor: it is not open.
            throw ErrorValues.errnoError(L, EBADF)
        default:
            return 0
        }
    }

    // MARK: - Watchers

    private static let newWatcher: LuaBody = { L in luaCall(L, newWatcher) }
    private static func newWatcher(_ L: LuaState) throws(LuaError) -> Int32 {
        let fd = try Arg.integer(L, 1)
        let events: Int32
        switch luaString(L, 2) ?? (luaIsNoneOrNil(L, 2) ? "r" : "?") {
        case "r": events = Int32(GS_EV_READ)
        case "w": events = Int32(GS_EV_WRITE)
        case "rw", "wr": events = Int32(GS_EV_READ) | Int32(GS_EV_WRITE)
        default: throw .argument(L, 2, "mode must be \"r\", \"w\" or \"rw\"")
        }
        if let error = WaitableDescriptor.refusal(fd) { throw ErrorValues.errnoError(L, error) }
        let watcher = IOWatcher(runtime: Runtime.from(L), fd: Int32(fd), events: events, standalone: true)
        LuaObjects.push(L, watcher, kind: .watcher)
        return 1
    }

    private static func watcherArg(_ L: LuaState, _ index: Int32) throws(LuaError) -> IOWatcher {
        try Arg.object(L, index, kind: .watcher, as: IOWatcher.self, expected: "gsock.io")
    }

    private static let wait: LuaBody = { L in luaCall(L, wait) }
    private static func wait(_ L: LuaState) throws(LuaError) -> Int32 {
        let watcher = try watcherArg(L, 1)
        let timeout = try Arg.timeout(L, 2)
        let fiber = try FiberBindings.runningFiber(L, "wait")
        if watcher.closed { throw ErrorValues.error(L, .closed, "the watcher is closed", errno: EBADF) }
        if watcher.isWaitedOn { throw ErrorValues.error(L, .busy, "another fiber is already waiting on this watcher") }
        let rt = Runtime.from(L)
        // The descriptor may have been closed under the watcher: libev would then wait
        // for ever, or abort the process when it registers the descriptor again.
        if fcntl(watcher.fd, F_GETFD) == -1 { throw ErrorValues.errnoError(L, EBADF) }
        fiber.timeoutValueRef = timeoutValueArg(L, 3)
        return rt.park(L, fiber, on: .io(watcher), timeout: timeout, what: "wait", then: ioWaitDone)
    }

    /// `cancel_wait(watcher [, err])`: raises err in the fiber waiting on it, if any.
    private static let cancelWait: LuaBody = { L in luaCall(L, cancelWait) }
    private static func cancelWait(_ L: LuaState) throws(LuaError) -> Int32 {
        let watcher = try watcherArg(L, 1)
        guard let waiter = watcher.waiter else { return 0 }
        lua_settop(L, 2)
        if luaIsNoneOrNil(L, 2) {
            gs_pop(L, 1)
            ErrorValues.pushCancelled(L)
        }
        Runtime.from(L).interrupt(waiter, error: luaRef(L))
        return 0
    }

    private static let closeWatcher: LuaBody = { L in luaCall(L, closeWatcher) }
    private static func closeWatcher(_ L: LuaState) throws(LuaError) -> Int32 {
        let watcher = try watcherArg(L, 1)
        var error: Int32?
        if watcher.isWaitedOn {
            ErrorValues.pushCancelled(L)
            error = luaRef(L)
        }
        watcher.close(error: error)
        return 0
    }

    private static let watcherFd: LuaBody = { L in luaCall(L, watcherFd) }
    private static func watcherFd(_ L: LuaState) throws(LuaError) -> Int32 {
        let watcher = try watcherArg(L, 1)
        lua_pushinteger(L, lua_Integer(watcher.closed ? -1 : watcher.fd))
        return 1
    }

    // MARK: - Wait lists

    private static let newWaitList: LuaBody = { L in
        LuaObjects.push(L!, WaitList(), kind: .waitList)
        return 1
    }

    private static func listArg(_ L: LuaState) throws(LuaError) -> WaitList {
        try Arg.object(L, 1, kind: .waitList, as: WaitList.self, expected: "gsock.waitlist")
    }

    /// `list:wait([timeout])` → true when notified, false when the timeout passed.
    private static let listWait: LuaBody = { L in luaCall(L, listWait) }
    private static func listWait(_ L: LuaState) throws(LuaError) -> Int32 {
        let list = try listArg(L)
        let timeout = try Arg.timeout(L, 2)
        let fiber = try FiberBindings.runningFiber(L, "wait")
        if timeout == 0 {
            lua_pushboolean(L, 0)
            return 1
        }
        return Runtime.from(L).park(L, fiber, on: .list(list), timeout: timeout, what: "wait",
                                    then: FiberBindings.notifiedOrTimedOut)
    }

    private static let listNotify: LuaBody = { L in luaCall(L, listNotify) }
    private static func listNotify(_ L: LuaState) throws(LuaError) -> Int32 {
        let list = try listArg(L)
        let n = try Arg.optionalInteger(L, 2) ?? 1
        lua_pushinteger(L, lua_Integer(list.notify(n, runtime: Runtime.from(L))))
        return 1
    }

    private static let listNotifyAll: LuaBody = { L in luaCall(L, listNotifyAll) }
    private static func listNotifyAll(_ L: LuaState) throws(LuaError) -> Int32 {
        let list = try listArg(L)
        lua_pushinteger(L, lua_Integer(list.notify(Int.max, runtime: Runtime.from(L))))
        return 1
    }

    private static let listWaiting: LuaBody = { L in luaCall(L, listWaiting) }
    private static func listWaiting(_ L: LuaState) throws(LuaError) -> Int32 {
        let list = try listArg(L)
        lua_pushinteger(L, lua_Integer(list.count))
        return 1
    }

    // MARK: - Timeouts

    /// `timeout(seconds [, err])`: raises err (default: a new "timeout" error) in the
    /// running fiber at its wait point once `seconds` have passed. nil never fires.
    private static let newTimeout: LuaBody = { L in luaCall(L, newTimeout) }
    private static func newTimeout(_ L: LuaState) throws(LuaError) -> Int32 {
        let seconds = try Arg.timeout(L, 1)
        let rt = Runtime.from(L)
        lua_settop(L, 2)
        let timeout = Timeout(runtime: rt)
        LuaObjects.push(L, timeout, kind: .timeout, userValues: 1)
        if luaIsNoneOrNil(L, 2) { ErrorValues.pushTimeout(L) } else { lua_pushvalue(L, 2) }
        lua_setiuservalue(L, -2, 1)
        if let seconds {
            let fiber = try FiberBindings.runningFiber(L, "timeout")
            lua_pushvalue(L, -1)
            timeout.start(seconds: seconds, fiber: fiber, anchor: luaRef(L))
        }
        return 1
    }

    private static func timeoutArg(_ L: LuaState) throws(LuaError) -> Timeout {
        try Arg.object(L, 1, kind: .timeout, as: Timeout.self, expected: "gsock.timeout")
    }

    private static let cancelTimeout: LuaBody = { L in luaCall(L, cancelTimeout) }
    private static func cancelTimeout(_ L: LuaState) throws(LuaError) -> Int32 {
        try timeoutArg(L).cancel()
        return 0
    }

    private static let timeoutPending: LuaBody = { L in luaCall(L, timeoutPending) }
    private static func timeoutPending(_ L: LuaState) throws(LuaError) -> Int32 {
        lua_pushboolean(L, try timeoutArg(L).pending ? 1 : 0)
        return 1
    }
}
