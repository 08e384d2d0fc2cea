// A reusable io watcher (`gsock.io(fd, mode)`), the object gevent's `wait` and
// `cancel_wait` take. Reusing it across waits costs no epoll_ctl: libev keeps the
// registration while the watcher is stopped and started within the loop.
import CLibev
import CShims

final class IOWatcher {
    /// libev's watcher, inline: the first stored property, so that it sits at the start of
    /// the object's stored properties for as long as the object lives (as swift-atomics'
    /// ManagedAtomic keeps its value). Only ever used through `io`. One allocation per
    /// watcher instead of two: 32 bytes less for each connection.
    private var watcherStorage = ev_io()
    unowned(unsafe) let runtime: Runtime
    /// The fiber parked in `wait` on this watcher; at most one. Held as a bare pointer
    /// (a parked fiber is anchored by the runtime), so that `isWaitedOn` costs no retain.
    private var waiterRef: Unmanaged<Fiber>?
    var waiter: Fiber? {
        get { waiterRef?.takeUnretainedValue() }
        set { waiterRef = newValue.map { Unmanaged.passUnretained($0) } }
    }
    var isWaitedOn: Bool { waiterRef != nil }
    /// Called when the descriptor is ready and no fiber waits: the host's own wait (an
    /// HTTP connection between requests holds no fiber). Unowned: its owner stops the
    /// watcher before it goes away.
    unowned(unsafe) var host: (any HostWaiter)?
    private(set) var closed = false
    /// Made by gsock.io for a descriptor the program names, not by a socket for its own.
    let standalone: Bool

    @inline(__always)
    var io: UnsafeMutablePointer<ev_io> {
        _getUnsafePointerToStoredProperties(self).assumingMemoryBound(to: ev_io.self)
    }
    /// The descriptor and the events watched, as libev holds them.
    var fd: Int32 { io.pointee.fd }
    var events: Int32 { io.pointee.events & Int32(GS_EV_READ | GS_EV_WRITE) }

    init(runtime: Runtime, fd: Int32, events: Int32, standalone: Bool = false) {
        self.runtime = runtime
        self.standalone = standalone
        gs_io_init(io, watcherReady, fd, events)
        io.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        ev_io_stop(runtime.loop, io)
    }

    /// Watches another descriptor from now on (the watcher must not be waited on).
    func rebind(fd: Int32) {
        ev_io_stop(runtime.loop, io)
        gs_io_set(io, fd, events)
    }

    /// Stops watching; a fiber waiting is woken with `error` (a registry reference).
    func close(error: Int32?) {
        guard !closed else { return }
        closed = true
        if let waiter, let error {
            runtime.wake(waiter, .error(error), direct: false)
        } else if let error {
            luaUnref(runtime.L, error)
        }
        ev_io_stop(runtime.loop, io)
    }
}

private func watcherReady(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    // The watcher and the runtime are borrowed, not retained (a retain and a release each
    // per wake). The watcher is not touched once the fiber runs, since the fiber may free
    // the socket that owns it; the fiber itself is held while it runs.
    let (runtime, waiter) = Unmanaged<IOWatcher>.fromOpaque(w!.pointee.data)._withUnsafeGuaranteedRef {
        (Unmanaged.passUnretained($0.runtime), $0.waiter)
    }
    guard let fiber = waiter else {
        if let host = Unmanaged<IOWatcher>.fromOpaque(w!.pointee.data).takeUnretainedValue().host {
            withExtendedLifetime(host) { host.descriptorReady(revents) }   // it stops the watcher if it must
        } else {
            ev_io_stop(loop, w)
        }
        return
    }
    withExtendedLifetime(fiber) {
        runtime._withUnsafeGuaranteedRef { $0.wake(fiber, .ready(revents), direct: true) }
    }
}

/// What waits on a watcher at loop level, without a fiber.
protocol HostWaiter: AnyObject {
    /// The descriptor is ready; the watcher is still started (stop it to stop watching).
    func descriptorReady(_ revents: Int32)
}
