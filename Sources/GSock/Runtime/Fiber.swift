// A fiber: one Lua thread plus the scheduler's state for it.
//
// While the fiber is alive the runtime's threads table anchors its thread (`threadSlot`,
// see Runtime.threadsRef). The Lua side
// sees it as a handle (a "gsock.fiber" userdata that retains this object), made when the
// fiber is spawned or first asked for (`Runtime.pushHandle`) and anchored in the registry
// while the fiber lives; the handle's first user value is the thread. When the fiber ends,
// its results (or its error) replace the thread in the handle, and the anchors are dropped.
import CLibev
import CLua
import CShims

// Hot fields opt out of dynamic exclusivity checks, as in Socket.
final class Fiber {
    enum State: Equatable {
        case created   ///< not yet scheduled (spawn_later's delay is running)
        case ready     ///< in the ready queue: to be started or resumed
        case running
        case parked    ///< suspended in the parking primitive
        case dead
    }

    /// Why a parked fiber was woken; read once by the continuation of the wait.
    enum Wake {
        case none
        case ready(Int32)              ///< libev revents
        case timedOut
        case notified(WaitList)
        case error(Int32)              ///< registry reference to the value to raise
        case abandoned                 ///< the wait was given up (see `abandonPark`)
    }

    /// What a parked fiber waits on.
    enum Site {
        case none
        case io(IOWatcher)
        case rawIO                     ///< the fiber's own watcher (wait_read on an fd)
        case timer                     ///< sleep
        case list(WaitList)
        case yield                     ///< sleep(0): already in the ready queue
        case resolve(ResolveJob)       ///< name resolution on a worker thread
        case select(SelectWait)        ///< socket.select over several descriptors
    }

    unowned(unsafe) let runtime: Runtime
    private(set) var id: Int
    let thread: LuaState
    var threadSlot: Int32 = 0
    var handleRef: Int32 = LUA_NOREF
    @exclusivity(unchecked) var state: State = .created
    @exclusivity(unchecked) var wake: Wake = .none
    @exclusivity(unchecked) var site: Site = .none
    /// Values on the thread's stack for its first resume (function and arguments).
    @exclusivity(unchecked) var startArgs: Int32 = 0
    /// Values below its function on the thread's stack, left there for its observer
    /// (an HTTP request's req and res): not results.
    @exclusivity(unchecked) var kept: Int32 = 0
    /// The value `timeout_exc` of the current wait, or LUA_NOREF for the default error.
    @exclusivity(unchecked) var timeoutValueRef: Int32 = LUA_NOREF
    var successful = false
    /// Lua code was given this fiber's thread (coroutine.running): it may keep it as a key,
    /// so the thread is not reused for another fiber.
    var threadSeen = false
    /// The name lookup of socket.dns in progress.
    var resolveJob: ResolveJob?
    @exclusivity(unchecked) var hasStarted = false
    /// The descriptors of its current wait listed in `runtime.descriptorWaiters`.
    var waitedDescriptors: [Int32] = []
    /// Set when the fiber was killed: its death is not logged as an error.
    var killed = false

    @exclusivity(unchecked) private(set) var timer: UnsafeMutablePointer<ev_timer>?
    @exclusivity(unchecked) private(set) var rawIO: UnsafeMutablePointer<ev_io>?
    /// Fibers in `join`; created on first use.
    var joiners: WaitList?
    /// Registry reference to a table of functions to call at death (pools use it).
    var linksRef: Int32 = LUA_NOREF
    /// Told when the fiber waits and when it ends, however it ends (an HTTP request's
    /// connection).
    var observer: (any FiberObserver)?

    // Membership of one WaitList at a time.
    @exclusivity(unchecked) var listNext: Fiber?
    unowned(unsafe) var listPrev: Fiber?
    // Membership of the runtime's list of live fibers.
    var liveNext: Fiber?
    unowned(unsafe) var livePrev: Fiber?

    init(runtime: Runtime, id: Int, thread: LuaState) {
        self.runtime = runtime
        self.id = id
        self.thread = thread
        runtime.fiberObjects += 1
    }

    deinit {
        releaseWatchers()
        runtime.fiberObjects -= 1
    }

    /// Makes a dead fiber that nothing else references a new one on the same thread: an
    /// allocation and a deinit fewer per HTTP request (370 instructions, callgrind said).
    /// Its watchers went with its death (Runtime.markDead), its lists and links are empty.
    func reborn(id: Int) {
        self.id = id
        state = .created
        wake = .none
        site = .none
        startArgs = 0
        kept = 0
        timeoutValueRef = LUA_NOREF
        successful = false
        hasStarted = false
        killed = false
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    static func from(_ p: UnsafeMutableRawPointer?) -> Fiber {
        Unmanaged<Fiber>.fromOpaque(p!).takeUnretainedValue()
    }

    /// The fiber's timer, for sleeps, wait timeouts and spawn_later.
    func timerWatcher() -> UnsafeMutablePointer<ev_timer> {
        if let timer { return timer }
        let t = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
        gs_timer_init(t, fiberTimerFired, 0)
        t.pointee.data = opaque
        timer = t
        return t
    }

    /// The fiber's own io watcher, for waits on bare descriptors.
    func rawIOWatcher(fd: Int32, events: Int32) -> UnsafeMutablePointer<ev_io> {
        let w: UnsafeMutablePointer<ev_io>
        if let rawIO {
            w = rawIO
        } else {
            w = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
            gs_io_init(w, fiberIOReady, fd, events)
            w.pointee.data = opaque
            rawIO = w
        }
        // A bare descriptor may have been closed and its number reused since the last
        // wait: only a fresh ev_io_set makes libev register it again.
        gs_io_set(w, fd, events)
        return w
    }

    /// Stops and frees the watchers. Must run before the fiber object goes away.
    func releaseWatchers() {
        if let timer {
            ev_timer_stop(runtime.loop, timer)
            timer.deallocate()
            self.timer = nil
        }
        if let rawIO {
            ev_io_stop(runtime.loop, rawIO)
            rawIO.deallocate()
            self.rawIO = nil
        }
    }
}

private func fiberTimerFired(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    let fiber = Fiber.from(w!.pointee.data)
    withExtendedLifetime(fiber) { fiber.runtime.fiberTimerFired(fiber) }
}

private func fiberIOReady(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    let fiber = Fiber.from(w!.pointee.data)
    withExtendedLifetime(fiber) { fiber.runtime.wake(fiber, .ready(revents), direct: true) }
}

/// What must know when a fiber waits, and when it ends, even one killed before it ran.
protocol FiberObserver: AnyObject {
    /// The fiber is about to wait (it parks; others run before it goes on).
    func fiberParking(_ fiber: Fiber)
    /// The fiber's function returned (`ok`, its `results` on top of its thread) or raised
    /// (the error on top), before the runtime records the outcome. True when the observer
    /// took the outcome: the runtime then keeps no results and logs no failure.
    func fiberFinishing(_ fiber: Fiber, ok: Bool, results: Int32) -> Bool
    /// Told when the fiber ends, however it ends.
    func fiberEnded(_ fiber: Fiber)
}

extension FiberObserver {
    func fiberParking(_ fiber: Fiber) {}
    func fiberFinishing(_ fiber: Fiber, ok: Bool, results: Int32) -> Bool { false }
}
