// A list of parked fibers, first in first out: the building block of join, events,
// queues, semaphores and pools. Waking does not hand anything over: a woken fiber
// re-checks its condition, so a wake that is overridden (by a kill or a timeout)
// loses nothing; the runtime passes such a wake on to the next waiter.
final class WaitList {
    @exclusivity(unchecked) private(set) var count = 0
    private var head: Fiber?
    private unowned(unsafe) var tail: Fiber?

    func append(_ fiber: Fiber) {
        fiber.listNext = nil
        fiber.listPrev = tail
        if let tail { tail.listNext = fiber } else { head = fiber }
        tail = fiber
        count += 1
    }

    func remove(_ fiber: Fiber) {
        let next = fiber.listNext
        let prev = fiber.listPrev
        if let prev { prev.listNext = next } else { head = next }
        if let next { next.listPrev = prev } else { tail = prev }
        fiber.listNext = nil
        fiber.listPrev = nil
        count -= 1
    }

    /// Wakes up to `n` waiters, oldest first; returns how many.
    @discardableResult
    func notify(_ n: Int, runtime: Runtime) -> Int {
        var woken = 0
        while woken < n, let fiber = head {
            runtime.wake(fiber, .notified(self), direct: false)
            woken += 1
        }
        return woken
    }
}
