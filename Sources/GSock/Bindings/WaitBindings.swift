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

    private static let waitRead: LuaBody = { L in waitOnDescriptor(L!, Int32(GS_EV_READ), "wait_read") }
    private static let waitWrite: LuaBody = { L in waitOnDescriptor(L!, Int32(GS_EV_WRITE), "wait_write") }
    private static let waitReadWrite: LuaBody = { L in waitOnDescriptor(L!, Int32(GS_EV_READ) | Int32(GS_EV_WRITE), "wait_readwrite") }

    private static func waitOnDescriptor(_ L: LuaState, _ events: Int32, _ what: String) -> Int32 {
        let fd: Int
        switch luaIntegerArg(L, 1) {
        case .error(let status): return status
        case .value(let v): fd = v
        }
        let timeout: Double?
        switch luaTimeoutArg(L, 2) {
        case .error(let status): return status
        case .value(let t): timeout = t
        }
        let fiber: Fiber
        switch FiberBindings.currentFiber(L, what) {
        case .error(let status): return status
        case .value(let f): fiber = f
        }
        if let error = WaitableDescriptor.refusal(fd) {
            ErrorValues.pushErrno(L, error)
            return LuaStatus.raise
        }
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
    private static let ioWaitDone: LuaBody = { L in
        let L = L!
        switch Runtime.from(L).takeWake(L, raiseTimeout: true) {
        case .raise(let status):
            return status
        case .woken(.ready(let revents)) where revents & Int32(GS_EV_CLOSED) != 0:
            // A socket of this runtime closed the descriptor.
            ErrorValues.pushCancelled(L)
            return LuaStatus.raise
        case .woken(.ready(let revents)) where revents & Int32(GS_EV_ERROR) != 0:
            // libev could not watch the descriptor: it is not open.
            ErrorValues.pushErrno(L, EBADF)
            return LuaStatus.raise
        case .woken:
            return 0
        }
    }

    // MARK: - Watchers

    private static let newWatcher: LuaBody = { L in
        let L = L!
        let fd: Int
        switch luaIntegerArg(L, 1) {
        case .error(let status): return status
        case .value(let v): fd = v
        }
        let events: Int32
        switch luaString(L, 2) ?? (luaIsNoneOrNil(L, 2) ? "r" : "?") {
        case "r": events = Int32(GS_EV_READ)
        case "w": events = Int32(GS_EV_WRITE)
        case "rw", "wr": events = Int32(GS_EV_READ) | Int32(GS_EV_WRITE)
        default: return luaArgError(L, 2, "mode must be \"r\", \"w\" or \"rw\"")
        }
        if let error = WaitableDescriptor.refusal(fd) {
            ErrorValues.pushErrno(L, error)
            return LuaStatus.raise
        }
        let watcher = IOWatcher(runtime: Runtime.from(L), fd: Int32(fd), events: events, standalone: true)
        LuaObjects.push(L, watcher, kind: .watcher)
        return 1
    }

    private static func watcherArg(_ L: LuaState, _ index: Int32) -> ArgResult<IOWatcher> {
        guard let w = LuaObjects.get(L, index, kind: .watcher, as: IOWatcher.self) else {
            return .error(luaTypeError(L, index, "gsock.io"))
        }
        return .value(w)
    }

    private static let wait: LuaBody = { L in
        let L = L!
        let watcher: IOWatcher
        switch watcherArg(L, 1) {
        case .error(let status): return status
        case .value(let w): watcher = w
        }
        let timeout: Double?
        switch luaTimeoutArg(L, 2) {
        case .error(let status): return status
        case .value(let t): timeout = t
        }
        let fiber: Fiber
        switch FiberBindings.currentFiber(L, "wait") {
        case .error(let status): return status
        case .value(let f): fiber = f
        }
        if watcher.closed {
            ErrorValues.push(L, .closed, "the watcher is closed", errno: EBADF)
            return LuaStatus.raise
        }
        if watcher.isWaitedOn {
            ErrorValues.push(L, .busy, "another fiber is already waiting on this watcher")
            return LuaStatus.raise
        }
        let rt = Runtime.from(L)
        // The descriptor may have been closed under the watcher: libev would then wait
        // for ever, or abort the process when it registers the descriptor again.
        if fcntl(watcher.fd, F_GETFD) == -1 {
            ErrorValues.pushErrno(L, EBADF)
            return LuaStatus.raise
        }
        fiber.timeoutValueRef = timeoutValueArg(L, 3)
        return rt.park(L, fiber, on: .io(watcher), timeout: timeout, what: "wait", then: ioWaitDone)
    }

    /// `cancel_wait(watcher [, err])`: raises err in the fiber waiting on it, if any.
    private static let cancelWait: LuaBody = { L in
        let L = L!
        let watcher: IOWatcher
        switch watcherArg(L, 1) {
        case .error(let status): return status
        case .value(let w): watcher = w
        }
        guard let waiter = watcher.waiter else { return 0 }
        lua_settop(L, 2)
        if luaIsNoneOrNil(L, 2) {
            gs_pop(L, 1)
            ErrorValues.pushCancelled(L)
        }
        Runtime.from(L).interrupt(waiter, error: luaRef(L))
        return 0
    }

    private static let closeWatcher: LuaBody = { L in
        let L = L!
        switch watcherArg(L, 1) {
        case .error(let status): return status
        case .value(let watcher):
            var error: Int32?
            if watcher.isWaitedOn {
                ErrorValues.pushCancelled(L)
                error = luaRef(L)
            }
            watcher.close(error: error)
            return 0
        }
    }

    private static let watcherFd: LuaBody = { L in
        let L = L!
        switch watcherArg(L, 1) {
        case .error(let status): return status
        case .value(let watcher):
            lua_pushinteger(L, lua_Integer(watcher.closed ? -1 : watcher.fd))
            return 1
        }
    }

    // MARK: - Wait lists

    private static let newWaitList: LuaBody = { L in
        LuaObjects.push(L!, WaitList(), kind: .waitList)
        return 1
    }

    private static func listArg(_ L: LuaState) -> ArgResult<WaitList> {
        guard let list = LuaObjects.get(L, 1, kind: .waitList, as: WaitList.self) else {
            return .error(luaTypeError(L, 1, "gsock.waitlist"))
        }
        return .value(list)
    }

    /// `list:wait([timeout])` → true when notified, false when the timeout passed.
    private static let listWait: LuaBody = { L in
        let L = L!
        let list: WaitList
        switch listArg(L) {
        case .error(let status): return status
        case .value(let l): list = l
        }
        let timeout: Double?
        switch luaTimeoutArg(L, 2) {
        case .error(let status): return status
        case .value(let t): timeout = t
        }
        let fiber: Fiber
        switch FiberBindings.currentFiber(L, "wait") {
        case .error(let status): return status
        case .value(let f): fiber = f
        }
        if timeout == 0 {
            lua_pushboolean(L, 0)
            return 1
        }
        return Runtime.from(L).park(L, fiber, on: .list(list), timeout: timeout, what: "wait",
                                    then: FiberBindings.notifiedOrTimedOut)
    }

    private static let listNotify: LuaBody = { L in
        let L = L!
        switch listArg(L) {
        case .error(let status): return status
        case .value(let list):
            var n = 1
            if !luaIsNoneOrNil(L, 2) {
                switch luaIntegerArg(L, 2) {
                case .error(let status): return status
                case .value(let v): n = v
                }
            }
            lua_pushinteger(L, lua_Integer(list.notify(n, runtime: Runtime.from(L))))
            return 1
        }
    }

    private static let listNotifyAll: LuaBody = { L in
        let L = L!
        switch listArg(L) {
        case .error(let status): return status
        case .value(let list):
            lua_pushinteger(L, lua_Integer(list.notify(Int.max, runtime: Runtime.from(L))))
            return 1
        }
    }

    private static let listWaiting: LuaBody = { L in
        let L = L!
        switch listArg(L) {
        case .error(let status): return status
        case .value(let list):
            lua_pushinteger(L, lua_Integer(list.count))
            return 1
        }
    }

    // MARK: - Timeouts

    /// `timeout(seconds [, err])`: raises err (default: a new "timeout" error) in the
    /// running fiber at its wait point once `seconds` have passed. nil never fires.
    private static let newTimeout: LuaBody = { L in
        let L = L!
        let seconds: Double?
        switch luaTimeoutArg(L, 1) {
        case .error(let status): return status
        case .value(let s): seconds = s
        }
        let rt = Runtime.from(L)
        lua_settop(L, 2)
        let timeout = Timeout(runtime: rt)
        LuaObjects.push(L, timeout, kind: .timeout, userValues: 1)
        if luaIsNoneOrNil(L, 2) { ErrorValues.pushTimeout(L) } else { lua_pushvalue(L, 2) }
        lua_setiuservalue(L, -2, 1)
        if let seconds {
            let fiber: Fiber
            switch FiberBindings.currentFiber(L, "timeout") {
            case .error(let status): return status
            case .value(let f): fiber = f
            }
            lua_pushvalue(L, -1)
            timeout.start(seconds: seconds, fiber: fiber, anchor: luaRef(L))
        }
        return 1
    }

    private static func timeoutArg(_ L: LuaState) -> ArgResult<Timeout> {
        guard let t = LuaObjects.get(L, 1, kind: .timeout, as: Timeout.self) else {
            return .error(luaTypeError(L, 1, "gsock.timeout"))
        }
        return .value(t)
    }

    private static let cancelTimeout: LuaBody = { L in
        let L = L!
        switch timeoutArg(L) {
        case .error(let status): return status
        case .value(let t):
            t.cancel()
            return 0
        }
    }

    private static let timeoutPending: LuaBody = { L in
        let L = L!
        switch timeoutArg(L) {
        case .error(let status): return status
        case .value(let t):
            lua_pushboolean(L, t.pending ? 1 : 0)
            return 1
        }
    }
}
