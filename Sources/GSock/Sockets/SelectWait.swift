// socket.select's wait: one fiber parked on several descriptors at once.
import CLibev
import CShims

final class SelectWait {
    private let runtime: Runtime
    private var watchers: [UnsafeMutablePointer<ev_io>] = []
    private unowned(unsafe) var fiber: Fiber?
    let descriptors: [Int32]

    init(runtime: Runtime, read: [Int32], write: [Int32]) {
        self.runtime = runtime
        descriptors = read + write
        let me = Unmanaged.passUnretained(self).toOpaque()
        for (fds, events) in [(read, Int32(GS_EV_READ)), (write, Int32(GS_EV_WRITE))] {
            for fd in fds {
                let w = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
                gs_io_init(w, selectReady, fd, events)
                w.pointee.data = me
                watchers.append(w)
            }
        }
    }

    deinit { stop() }

    func start(_ fiber: Fiber) {
        self.fiber = fiber
        for w in watchers { ev_io_start(runtime.loop, w) }
    }

    func stop() {
        for w in watchers {
            ev_io_stop(runtime.loop, w)
            w.deallocate()
        }
        watchers.removeAll()
        fiber = nil
    }

    fileprivate func ready() {
        guard let fiber else { return }
        withExtendedLifetime(fiber) { runtime.wake(fiber, .ready(0), direct: true) }
    }
}

private func selectReady(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    Unmanaged<SelectWait>.fromOpaque(w!.pointee.data).takeUnretainedValue().ready()
}
