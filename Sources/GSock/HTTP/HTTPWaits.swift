// The deadlines of an HTTP service's connections waiting for input, on one timer per
// service instead of one per connection (an ev_timer is a 48-byte block and an entry in
// libev's timer heap, for every idle connection). Each kind of wait has one duration
// (header_timeout, keepalive_timeout, the 2 s of a lingering close), so a queue per kind,
// appended to at its tail, stays in deadline order: libev's advice for many timeouts of
// the same length. The timer is started for the earliest first deadline; a connection
// that stops waiting leaves its queue, and the timer, when it fires early, starts again
// (or stops, with no wait left). Stopped and started per request, it would cost ~300
// instructions a request: every connection of a busy service leaves its queue while its
// request runs.
import CLibev
import CShims

/// The kinds of wait, each with its queue in the service.
enum HTTPWaitKind: UInt8 {
    case none
    /// For a head: header_timeout (and a new connection's first).
    case head
    /// Between requests: keepalive_timeout.
    case idle
    /// A lingering close: 2 s.
    case linger
}

/// Connections waiting with one duration, earliest deadline first, linked through
/// HTTPConnection.waitNext/waitPrev. The links are unretained (the service's list holds
/// the connections, and a connection leaves its queue before it leaves that list), and
/// followed without a retain and a release per step (unowned references cost them:
/// ~230 instructions a request, callgrind said).
struct HTTPWaitQueue {
    private(set) var first: Unmanaged<HTTPConnection>?
    private var last: Unmanaged<HTTPConnection>?

    var isEmpty: Bool { first == nil }

    /// Inserts `c` (in no queue) by its deadline, from the tail: a wait that began later
    /// ends later, so this is one comparison unless the clock stepped back.
    @inline(__always)
    mutating func insert(_ c: HTTPConnection) {
        let link = Unmanaged.passUnretained(c)
        var before = last
        while let b = before, b.deadline > c.deadline { before = b.waitPrev }
        let after = before == nil ? first : before!.waitNext
        c.waitPrev = before
        c.waitNext = after
        if let before { before.waitNext = link } else { first = link }
        if let after { after.waitPrev = link } else { last = link }
    }

    @inline(__always)
    mutating func remove(_ c: HTTPConnection) {
        let prev = c.waitPrev, next = c.waitNext
        if let prev { prev.waitNext = next } else { first = next }
        if let next { next.waitPrev = prev } else { last = prev }
        c.waitNext = nil
        c.waitPrev = nil
    }
}

private extension Unmanaged where Instance == HTTPConnection {
    var deadline: Double { _withUnsafeGuaranteedRef { $0.deadline } }
    var waitNext: Unmanaged<HTTPConnection>? {
        get { _withUnsafeGuaranteedRef { $0.waitNext } }
        nonmutating set { _withUnsafeGuaranteedRef { $0.waitNext = newValue } }
    }
    var waitPrev: Unmanaged<HTTPConnection>? {
        get { _withUnsafeGuaranteedRef { $0.waitPrev } }
        nonmutating set { _withUnsafeGuaranteedRef { $0.waitPrev = newValue } }
    }
}

extension HTTPService {
    /// `c` waits for input until `deadline` (the loop's clock) in the queue of `kind`.
    @inline(__always)
    func wait(_ c: HTTPConnection, _ kind: HTTPWaitKind, until deadline: Double) {
        if c.waitKind == kind && c.deadline == deadline { return }
        if c.waitKind != .none { withQueue(c.waitKind) { $0.remove(c) } }
        c.deadline = deadline
        c.waitKind = kind
        withQueue(kind) { $0.insert(c) }
        if gs_is_active(waitTimer) == 0 || waitTimerAt > deadline { startWaitTimer(at: deadline) }
    }

    /// `c` no longer waits (its request started, it closed, it was handed over).
    @inline(__always)
    func endWait(_ c: HTTPConnection) {
        guard c.waitKind != .none else { return }
        withQueue(c.waitKind) { $0.remove(c) }
        c.waitKind = .none
    }

    @inline(__always)
    private func withQueue(_ kind: HTTPWaitKind, _ body: (inout HTTPWaitQueue) -> Void) {
        switch kind {
        case .head: body(&headWaits)
        case .idle: body(&idleWaits)
        case .linger: body(&lingerWaits)
        case .none: break
        }
    }

    private func startWaitTimer(at deadline: Double) {
        ev_timer_stop(runtime.loop, waitTimer)
        gs_timer_set(waitTimer, max(0, deadline - ev_now(runtime.loop)))
        ev_timer_start(runtime.loop, waitTimer)
        waitTimerAt = deadline
    }

    /// Times out every connection whose deadline passed, then starts the timer for the
    /// next deadline.
    fileprivate func waitTimerFired() {
        let now = ev_now(runtime.loop)
        var next = Double.infinity
        for kind in [HTTPWaitKind.head, .idle, .linger] {
            while true {
                var first: Unmanaged<HTTPConnection>?
                withQueue(kind) { first = $0.first }
                guard let c = first?.takeUnretainedValue() else { break }
                guard c.deadline <= now else { next = min(next, c.deadline); break }
                endWait(c)
                c.timedOut()
            }
        }
        // A timed-out connection's close runs Lua (the server's count), which may have
        // started other waits: the timer is then started already, for the earliest.
        if next < .infinity && (gs_is_active(waitTimer) == 0 || waitTimerAt > next) { startWaitTimer(at: next) }
    }
}

func httpWaitTimerFired(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    let service = Unmanaged<HTTPService>.fromOpaque(w!.pointee.data).takeUnretainedValue()
    withExtendedLifetime(service) { service.waitTimerFired() }
}
