// The scheduler: starting, parking, waking and ending fibers.
//
// Every wait in gsockd goes through `park`: the fiber records what it waits on
// (a watcher, a timer, a wait list), optionally arms its timer, and yields. Whatever
// ends the wait calls `wake`, which detaches the fiber from everything it waited on
// and resumes it; the wait's continuation then reads `fiber.wake`.
import CLibev
import CLua
import CShims

extension Runtime {
    // MARK: - The ready queue

    /// The fibers to run at the end of this loop iteration, and the watchers that run them.
    struct ReadyQueue {
        /// The queued fibers, in order.
        var fibers: [Fiber] = []
        /// The batch `runReady` is running: the queue's previous storage, reused.
        private(set) var batch: [Fiber] = []
        /// Runs the queued fibers after every other callback of each iteration.
        let check: UnsafeMutablePointer<ev_check> = .allocate(capacity: 1)
        /// While fibers are queued, keeps the poll from blocking.
        let idle: UnsafeMutablePointer<ev_idle> = .allocate(capacity: 1)

        /// Makes the queued fibers the batch to run, and the queue empty.
        mutating func takeBatch() { swap(&fibers, &batch) }

        /// Empties the batch, keeping its storage for the next.
        mutating func endBatch() { batch.removeAll(keepingCapacity: true) }

        func deallocateWatchers() {
            check.deallocate()
            idle.deallocate()
        }
    }

    /// Queues a fiber to run at the end of this loop iteration.
    func enqueue(_ fiber: Fiber) {
        fiber.state = .ready
        ready.fibers.append(fiber)
        if ready.fibers.count == 1 && gs_is_active(ready.idle) == 0 { ev_idle_start(loop, ready.idle) }
    }

    /// Runs the queued fibers, in batches: those a batch wakes run in the next batch, up to
    /// a few batches per loop iteration so that descriptors are still polled often.
    func runReady() {
        var batches = 0
        while !ready.fibers.isEmpty && batches < 4 {
            ready.takeBatch()
            for fiber in ready.batch where fiber.state == .ready {
                resume(fiber)
            }
            ready.endBatch()
            batches += 1
        }
        if ready.fibers.isEmpty { ev_idle_stop(loop, ready.idle) }
    }

    // MARK: - Creating and resuming

    /// Creates a fiber whose function and arguments are the top `count` values of `from`,
    /// and pushes its handle on `from` (unless `pushingHandle` is false: an HTTP request's
    /// fiber gets its handle only if something asks for it, see `pushHandle`). The first
    /// `keeping` of the values are not the function's: they stay below it on the thread's
    /// stack for the fiber's observer (`Fiber.kept`).
    func makeFiber(from: LuaState, count: Int32, pushingHandle: Bool = true, keeping: Int32 = 0) -> Fiber {
        var (co, slot, dead) = takeThread(from)
        let fiber: Fiber
        if isKnownUniquelyReferenced(&dead), let dead {
            dead.reborn(id: nextFiberId)
            fiber = dead
        } else {   // none, or one still referenced (a handle made since it ended): it stays dead
            fiber = Fiber(runtime: self, id: nextFiberId, thread: co)
        }
        fiber.threadSlot = slot
        nextFiberId += 1
        gs_setextraspace(co, fiber.opaque)
        // A new thread has room for LUA_MINSTACK values; spawn(fn, ...) may pass more. It
        // cannot fail: `from` holds as many.
        _ = lua_checkstack(co, count)
        lua_xmove(from, co, count)
        fiber.startArgs = count - 1 - keeping
        fiber.kept = keeping
        linkLive(fiber)
        liveFibers += 1
        if pushingHandle { pushHandle(from, fiber) }
        return fiber
    }

    /// Pushes the handle of the live `fiber`, made on first use: a userdata with two user
    /// values (the thread, then the results; the error), anchored in the registry until
    /// the fiber ends so that every push is the same value.
    func pushHandle(_ L: LuaState, _ fiber: Fiber) {
        if fiber.handleRef != LUA_NOREF {
            luaPushRef(L, fiber.handleRef)
            return
        }
        pushNewHandle(L, fiber)             // [handle]
        luaPushRef(L, threadsRef)
        lua_rawgeti(L, -1, lua_Integer(fiber.threadSlot))
        lua_setiuservalue(L, -3, 1)         // [handle, threads]
        gs_pop(L, 1)
        lua_pushvalue(L, -1)
        fiber.handleRef = luaRef(L)
    }

    /// An idle pooled thread: its slot in the threads table, and the dead fiber that last
    /// ran on it when that one may be reborn (it ended with no handle).
    struct IdleThread {
        let slot: Int32
        let thread: LuaState
        let fiber: Fiber?
    }

    /// A thread for a new fiber, its slot, and the fiber that last ran on it if it is
    /// pooled: an idle one's, or a new thread's.
    private func takeThread(_ L: LuaState) -> (LuaState, Int32, Fiber?) {
        if let idle = idleThreads.popLast() {
            gs_inherit_hook(idle.thread, L)
            return (idle.thread, idle.slot, idle.fiber)
        }
        luaPushRef(L, threadsRef)
        let co = lua_newthread(L)!
        let slot: Int32
        if let free = freeThreadSlots.popLast() {
            slot = free
        } else {
            threadSlots += 1
            slot = threadSlots
        }
        lua_rawseti(L, -2, lua_Integer(slot))
        gs_pop(L, 1)
        return (co, slot, nil)
    }

    /// Gives up an ended fiber's slot: it keeps the thread for a later fiber when the
    /// thread is `reusable` (it returned, its stack is empty, Lua code never held it) and
    /// the pool has room; otherwise the slot is emptied and the thread left to the GC.
    /// With `keepingFiber` (it has no handle), the fiber object is kept with the thread.
    private func releaseThread(of fiber: Fiber, reusable: Bool, keepingFiber: Bool = false) {
        let slot = fiber.threadSlot
        fiber.threadSlot = 0
        let co = fiber.thread
        if reusable && idleThreads.count < Runtime.threadPoolLimit
            && lua_status(co) == LUA_OK && lua_gettop(co) == 0 {
            idleThreads.append(IdleThread(slot: slot, thread: co, fiber: keepingFiber ? fiber : nil))
            return
        }
        luaPushRef(L, threadsRef)
        lua_pushnil(L)
        lua_rawseti(L, -2, lua_Integer(slot))
        gs_pop(L, 1)
        freeThreadSlots.append(slot)
    }

    func resume(_ fiber: Fiber) {
        let co = fiber.thread
        current = fiber
        fiber.state = .running
        fiber.hasStarted = true
        var nres: Int32 = 0
        let nargs = fiber.startArgs
        fiber.startArgs = 0
        if watchesRunaways {
            state.pointee.resumes &+= 1
            state.pointee.running_since = gs_coarse_now()
            state.pointee.running = co
        }
        let status = gs_resume(co, nil, nargs, &nres)
        state.pointee.running = nil
        current = nil
        if state.pointee.runaways != metrics.runawaysSeen { runawayRunEnded() }
        switch status {
        case LUA_YIELD:
            if fiber.state == .parked || fiber.state == .ready {
                gs_pop(co, nres)  // the park sentinel
                return
            }
            gs_pop(co, nres)
            if state.pointee.runaway_stopped != 0 {
                // The watchdog's hook yielded out of a fiber that caught its error and ran on.
                state.pointee.runaway_stopped = 0
                // A hook's yield leaves the thread's frame with no free slot.
                lua_checkstack(co, 2)
                lua_pushstring(co, "fiber stopped: it caught the max_run_time error and ran on without yielding")
                finish(fiber, ok: false, nres: 1)
                return
            }
            // coroutine.yield() called by the fiber's own function, not inside a coroutine.
            lua_checkstack(co, 2)
            lua_pushstring(co, "attempt to yield from outside a coroutine (use gsock.sleep(0) to let other fibers run)")
            finish(fiber, ok: false, nres: 1)
        case LUA_OK:
            finish(fiber, ok: true, nres: nres)
        default:
            finish(fiber, ok: false, nres: 1)
        }
    }

    // MARK: - The parking primitive

    /// Parks the running fiber (whose Lua thread is `L`) on `site`, with an optional
    /// timeout, and returns the status that makes the trampoline yield. When the fiber
    /// is woken, `kont` runs and reads `fiber.wake`.
    /// - Parameters:
    ///   - what: the Lua function name, for the error when `L` cannot yield.
    func park(_ L: LuaState, _ fiber: Fiber, on site: Fiber.Site, timeout: Double?,
              what: String, then kont: LuaBody) -> Int32 {
        guard lua_isyieldable(L) != 0 else {
            return luaRaise(L, "\(what): cannot wait here: Lua cannot yield across the C function that called "
                + "this code (such as a table.sort comparator or a string.gsub callback)")
        }
        fiber.observer?.fiberParking(fiber)
        fiber.site = site
        fiber.wake = .none
        fiber.state = .parked
        switch site {
        case .io(let watcher):
            watcher.waiter = fiber
            ev_io_start(loop, watcher.io)
            if watcher.standalone { noteDescriptorWait(fiber, [watcher.fd]) }
        case .rawIO:
            ev_io_start(loop, fiber.rawIO!)
            noteDescriptorWait(fiber, [fiber.rawIO!.pointee.fd])
        case .list(let list):
            list.append(fiber)
        case .yield:
            enqueue(fiber)
        case .resolve(let job):
            job.waiter = fiber
            resolver.submit(job)
        case .select(let wait):
            wait.start(fiber)
            noteDescriptorWait(fiber, wait.descriptors)
        case .timer, .none:
            break
        }
        if let timeout {
            armTimer(fiber.timerWatcher(), timeout)
        }
        L.gsState.pointee.kont = kont
        return LuaStatus.yield
    }

    private func noteDescriptorWait(_ fiber: Fiber, _ fds: [Int32]) {
        fiber.waitedDescriptors = fds
        for fd in fds { descriptorWaiters[fd, default: []].append(fiber) }
    }

    private func forgetDescriptorWait(_ fiber: Fiber) {
        for fd in fiber.waitedDescriptors {
            guard var fibers = descriptorWaiters[fd] else { continue }
            fibers.removeAll { $0 === fiber }
            descriptorWaiters[fd] = fibers.isEmpty ? nil : fibers
        }
        fiber.waitedDescriptors = []
    }

    /// The runtime is about to close `fd`: fibers waiting on it as a bare descriptor are
    /// woken as by cancel_wait (their watchers stop before the number can be reused).
    func descriptorClosing(_ fd: Int32) {
        guard !descriptorWaiters.isEmpty, let fibers = descriptorWaiters[fd] else { return }
        for fiber in fibers {
            var watcher: IOWatcher?
            if case .io(let w) = fiber.site { watcher = w }
            wake(fiber, .ready(Int32(GS_EV_CLOSED)), direct: false)
            // A watcher kept for later waits must register its number again: it may be reused.
            watcher?.rebind(fd: watcher!.fd)
        }
    }

    /// Detaches a parked fiber from what it waits on.
    func detach(_ fiber: Fiber) {
        if !fiber.waitedDescriptors.isEmpty { forgetDescriptorWait(fiber) }
        var site = Fiber.Site.none
        swap(&site, &fiber.site)  // moved out, not copied: no retain and release of its payload
        switch site {
        case .io(let watcher):
            watcher.waiter = nil
            ev_io_stop(loop, watcher.io)
        case .rawIO:
            if let w = fiber.rawIO { ev_io_stop(loop, w) }
        case .list(let list):
            list.remove(fiber)
        case .resolve(let job):
            job.abandoned = true
            job.waiter = nil
        case .select(let wait):
            wait.stop()
        case .timer, .yield, .none:
            break
        }
        if let t = fiber.timer { ev_timer_stop(loop, t) }
    }

    /// Ends the wait of a parked fiber. With `direct` (only from a libev callback, at
    /// loop level) the fiber runs now; otherwise it is queued.
    func wake(_ fiber: Fiber, _ reason: Fiber.Wake, direct: Bool) {
        guard fiber.state == .parked else {
            if case .error(let ref) = reason { luaUnref(L, ref) }
            return
        }
        detach(fiber)
        fiber.wake = reason
        if direct && !isInFiber {
            resume(fiber)
        } else {
            enqueue(fiber)
        }
    }

    /// Raises the value `error` (a registry reference, consumed) in `fiber` at its current
    /// wait point: now if it is parked, instead of its pending wake if it is queued.
    func interrupt(_ fiber: Fiber, error: Int32, direct: Bool = false) {
        switch fiber.state {
        case .parked:
            wake(fiber, .error(error), direct: direct)
        case .ready where !fiber.hasStarted:
            endUnstarted(fiber, error: error)
        case .ready:
            switch fiber.wake {
            case .notified(let list):
                list.notify(1, runtime: self)   // pass the wake on
            case .error(let old):
                luaUnref(L, old)
            default:
                break
            }
            fiber.wake = .error(error)
        case .created:
            endUnstarted(fiber, error: error)
        case .running, .dead:
            luaUnref(L, error)
        }
    }

    /// Ends a fiber that never ran (killed before its start).
    private func endUnstarted(_ fiber: Fiber, error: Int32) {
        let co = fiber.thread
        lua_settop(co, 0)
        luaPushRef(L, error)
        luaUnref(L, error)
        lua_xmove(L, co, 1)
        finish(fiber, ok: false, nres: 1)
    }

    /// Gives up the current park of `fiber` without resuming it (used when a wait inside
    /// a user coroutine cannot be passed out to the scheduler).
    func abandonPark(_ fiber: Fiber) {
        guard fiber.state == .parked || fiber.state == .ready else { return }
        if fiber.state == .parked { detach(fiber) }
        if case .error(let ref) = fiber.wake { luaUnref(L, ref) }
        fiber.wake = .abandoned
        fiber.state = .running
        ready.fibers.removeAll { $0 === fiber }
    }

    /// Starts a one-shot timer `seconds` from now. The loop's clock is refreshed first:
    /// it was read when the iteration began, and the fiber may have run long since.
    func armTimer(_ timer: UnsafeMutablePointer<ev_timer>, _ seconds: Double) {
        ev_now_update(loop)
        gs_timer_set(timer, seconds)
        ev_timer_start(loop, timer)
    }

    func fiberTimerFired(_ fiber: Fiber) {
        switch fiber.state {
        case .parked:
            // The descriptor may have become ready in the same iteration: readiness wins.
            if let io = pendingIO(of: fiber) {
                let revents = ev_clear_pending(loop, io)
                wake(fiber, .ready(revents), direct: true)
            } else {
                wake(fiber, .timedOut, direct: true)
            }
        case .created:
            resume(fiber)
        default:
            break
        }
    }

    private func pendingIO(of fiber: Fiber) -> UnsafeMutableRawPointer? {
        switch fiber.site {
        case .io(let watcher) where gs_is_pending(watcher.io) != 0: return UnsafeMutableRawPointer(watcher.io)
        case .rawIO: if let w = fiber.rawIO, gs_is_pending(w) != 0 { return UnsafeMutableRawPointer(w) }
        default: break
        }
        return nil
    }

    // MARK: - Ending

    /// Records the outcome of a fiber whose thread returned (`ok`, `nres` results on its
    /// stack) or raised (the error on top), then releases everything it held.
    func finish(_ fiber: Fiber, ok: Bool, nres: Int32) {
        let co = fiber.thread
        // lua_resume counts the kept values as results.
        var ok = ok, nres = ok ? nres - fiber.kept : nres, reusable = true
        // A failure the observer dealt with (an HTTP handler's: logged and answered there) is
        // not logged again; its handle, if anything holds it, still says how it ended.
        var failureHandled = false
        if let observer = fiber.observer, observer.fiberFinishing(fiber, ok: ok, results: nres) {
            if !ok && (fiber.handleRef != LUA_NOREF || fiber.linksRef != LUA_NOREF) {
                failureHandled = true
            } else {
                if !ok {
                    _ = gs_resetthread(co)   // a failure's to-be-closed variables close
                    reusable = false
                }
                ok = true
            }
            nres = 0
        }
        // Nothing can ask a handle-less fiber for its results: they are dropped with the
        // thread's stack. A failure, links or the main fiber need the handle.
        guard fiber.handleRef != LUA_NOREF || !ok || fiber.linksRef != LUA_NOREF || fiber === mainRun.fiber else {
            // It returned: its upvalues and to-be-closed variables are closed, and its
            // stack holds only the results. An emptied thread resumes a new function as a
            // reset one does (lua_resetthread would also shrink the stack, which the next
            // request grows again; the GC shrinks idle stacks).
            lua_settop(co, 0)
            gs_setextraspace(co, nil)
            releaseThread(of: fiber, reusable: reusable && !fiber.threadSeen, keepingFiber: true)
            fiber.successful = true
            markDead(fiber)
            return
        }
        pushHandle(L, fiber)
        let handle = lua_gettop(L)
        if ok {
            if nres > 0 {
                lua_createtable(L, nres, 1)
                // One at a time: moving all nres results at once overran L's stack (a
                // fiber returning 100 values corrupted the heap).
                for i in stride(from: nres, through: 1, by: -1) {
                    lua_xmove(co, L, 1)
                    lua_rawseti(L, handle + 1, lua_Integer(i))
                }
                lua_pushinteger(L, lua_Integer(nres))
                luaRawSetField(L, handle + 1, "n")
            } else {
                lua_pushboolean(L, 1)  // "no results"
            }
        } else {
            lua_xmove(co, L, 1)
            let isMain = fiber === mainRun.fiber
            if isMain || (!fiber.killed && !failureHandled && (fiber.joiners?.count ?? 0) == 0) {
                let (message, traceback) = describeFailure(of: fiber, handle: handle, errorIndex: lua_gettop(L))
                if isMain {
                    mainRun.outcome = .failure(message: message, traceback: traceback)
                } else {
                    failuresLogged += 1
                    logger.error("fiber failed: \(message)",
                                 metadata: ["fiber": "\(fiber.id)", "traceback": "\(traceback)"])
                }
            }
            lua_pushvalue(L, -1)
            lua_setiuservalue(L, handle, 2)
        }
        if ok { lua_settop(co, 0) } else { _ = gs_resetthread(co) }   // a failure's to-be-closed variables close
        gs_setextraspace(co, nil)
        releaseThread(of: fiber, reusable: ok && reusable && !fiber.threadSeen)
        if ok {
            lua_setiuservalue(L, handle, 1)   // results replace the thread
        } else {
            lua_pushboolean(L, 0)
            lua_setiuservalue(L, handle, 1)
            gs_pop(L, 1)                      // the error value (kept as user value 2)
        }
        fiber.successful = ok
        markDead(fiber)
        runLinks(of: fiber, handle: handle)
        let ref = fiber.handleRef
        fiber.handleRef = LUA_NOREF
        luaUnref(L, ref)
        if fiber === mainRun.fiber {
            if ok { mainRun.outcome = .success }
            ev_break(loop, Int32(EVBREAK_ALL))
        }
        lua_settop(L, handle - 1)
    }

    private func markDead(_ fiber: Fiber) {
        fiber.state = .dead
        fiber.releaseWatchers()
        liveFibers -= 1
        unlinkLive(fiber)
        fiber.joiners?.notify(Int.max, runtime: self)
        if let observer = fiber.observer {
            fiber.observer = nil
            observer.fiberEnded(fiber)
        }
    }

    private func runLinks(of fiber: Fiber, handle: Int32) {
        guard fiber.linksRef != LUA_NOREF else { return }
        luaPushRef(L, fiber.linksRef)
        luaUnref(L, fiber.linksRef)
        fiber.linksRef = LUA_NOREF
        let links = lua_gettop(L)
        if lua_type(L, links) == LUA_TFUNCTION {   // one linked function, kept as it is
            callLink(of: fiber, handle: handle, at: links)
        } else {
            var i: lua_Integer = 1
            while lua_rawgeti(L, links, i) != LUA_TNIL {
                callLink(of: fiber, handle: handle, at: lua_gettop(L))
                gs_pop(L, 1)
                i += 1
            }
        }
        lua_settop(L, links - 1)
    }

    /// Calls the function at `index` with the fiber's handle; an error in it is logged.
    private func callLink(of fiber: Fiber, handle: Int32, at index: Int32) {
        lua_pushvalue(L, index)
        lua_pushvalue(L, handle)
        if gs_pcall(L, 1, 0, 0) != LUA_OK {
            logger.error("a function linked to fiber \(fiber.id) raised: \(popMessage())")
        }
    }

    /// The message of a dead fiber's error and the Lua traceback of where it was raised.
    private func describeFailure(of fiber: Fiber, handle: Int32, errorIndex: Int32) -> (String, String) {
        lua_pushvalue(L, errorIndex)
        let message = popMessage()
        gs_pushcfunction(L, gs_traceback)
        lua_getiuservalue(L, handle, 1)  // the thread
        lua_pushstring(L, "")
        var traceback = ""
        if gs_pcall(L, 2, 1, 0) == LUA_OK {
            traceback = Runtime.withoutOwnFrames((luaString(L, -1) ?? "").trimmingPrefix("\n"))
        }
        gs_pop(L, 1)
        return (Runtime.positioned(message, traceback: traceback), traceback)
    }

    /// `message` with the position of the first frame of user code in `traceback` before it,
    /// when it has none: a gsock error value (a timeout, a kill) carries no position, and a
    /// message like "timed out" alone does not say where.
    static func positioned(_ message: String, traceback: String) -> String {
        func position(_ text: Substring) -> Substring? {
            guard let colon = text.firstIndex(of: ":") else { return nil }
            let rest = text[text.index(after: colon)...]
            let digits = rest.prefix(while: { $0.isNumber })
            guard !digits.isEmpty, rest.dropFirst(digits.count).first == ":" else { return nil }
            return text[..<digits.endIndex]
        }
        if position(Substring(message)) != nil { return message }
        for line in traceback.split(separator: "\n").dropFirst() {
            let frame = line.drop(while: { $0 == "\t" })
            if frame.hasPrefix("[C]") || ownChunks.contains(where: { frame.hasPrefix($0 + ":") }) { continue }
            if let at = position(frame) { return "\(at): \(message)" }
        }
        return message
    }

    /// The chunk names of gsockd's embedded Lua files, as tracebacks print them.
    static let ownChunks = ["gsock.lua", "socket.lua", "server.lua", "serve.lua", "testing.lua",
                            "assertions.lua", "junit.lua", "ssl.lua", "ssl/https.lua", "http.lua"] + EmbeddedLua.gsockModuleChunks

    /// A Lua traceback without the frames at its bottom that are gsockd's own (the fiber's
    /// start, the script runner): users read their code's frames, not the wrapper's.
    static func withoutOwnFrames(_ traceback: String) -> String {
        var lines = traceback.split(separator: "\n", omittingEmptySubsequences: false)
        func isOwn(_ line: Substring) -> Bool {
            let frame = line.drop(while: { $0 == "\t" })
            return frame.hasPrefix("[C]: in ?") || ownChunks.contains { frame.hasPrefix($0 + ":") }
        }
        while lines.count > 1, let last = lines.last, isOwn(last) { lines.removeLast() }
        return lines.joined(separator: "\n")
    }

    // MARK: - Live fibers

    // The links are moved (`take()`), not copied: a copy costs a retain and a release
    // per link changed, four of each per request fiber.
    func linkLive(_ fiber: Fiber) {
        let next = liveHead.take()
        next?.livePrev = fiber
        fiber.liveNext = next
        fiber.livePrev = nil
        liveHead = fiber
    }

    func unlinkLive(_ fiber: Fiber) {
        let next = fiber.liveNext.take()
        let prev = fiber.livePrev
        fiber.livePrev = nil
        next?.livePrev = prev
        if let prev { prev.liveNext = next } else { liveHead = next }
    }
}

extension String {
    func trimmingPrefix(_ p: String) -> String { hasPrefix(p) ? String(dropFirst(p.count)) : self }
}
