// `gsock.timeout(seconds [, err])`: a timer that raises `err` in the fiber that
// created it, at the point where that fiber waits. While it is pending the runtime
// anchors its Lua object, so dropping every reference does not cancel it.
import CLibev
import CLua
import CShims

final class Timeout {
    unowned(unsafe) let runtime: Runtime
    let timer: UnsafeMutablePointer<ev_timer>
    /// The fiber to interrupt; kept while the timer is pending.
    var fiber: Fiber?
    /// Registry reference anchoring the Lua object while pending.
    var anchorRef: Int32 = LUA_NOREF

    init(runtime: Runtime) {
        self.runtime = runtime
        timer = .allocate(capacity: 1)
        gs_timer_init(timer, timeoutFired, 0)
        timer.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        ev_timer_stop(runtime.loop, timer)
        timer.deallocate()
    }

    var pending: Bool { gs_is_active(timer) != 0 }

    func start(seconds: Double, fiber: Fiber, anchor: Int32) {
        self.fiber = fiber
        anchorRef = anchor
        runtime.armTimer(timer, seconds)
    }

    func cancel() {
        ev_timer_stop(runtime.loop, timer)
        fiber = nil
        let anchor = anchorRef
        anchorRef = LUA_NOREF
        luaUnref(runtime.L, anchor)
    }

    fileprivate func fire() {
        let L = runtime.L
        guard let fiber, fiber.state != .dead else { cancel(); return }
        // The error value is the object's first user value.
        luaPushRef(L, anchorRef)
        lua_getiuservalue(L, -1, 1)
        let errorRef = luaRef(L)
        gs_pop(L, 1)
        cancel()
        runtime.interrupt(fiber, error: errorRef, direct: true)
    }
}

private func timeoutFired(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    let timeout = Unmanaged<Timeout>.fromOpaque(w!.pointee.data).takeUnretainedValue()
    withExtendedLifetime(timeout) { timeout.fire() }
}
