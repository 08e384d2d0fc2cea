// Name resolution off the loop thread: getaddrinfo and getnameinfo block, so they
// run on Dispatch's worker threads and hand their results back through an
// ev_async watcher. The fiber that asked is parked meanwhile; the others run.
import CLibev
import CShims
import Dispatch
import Glibc
import Synchronization

final class ResolveJob: @unchecked Sendable {
    enum Request {
        case addresses(host: String?, service: String?, family: Int32, socktype: Int32, flags: Int32)
        case names(SocketAddress, flags: Int32)
    }

    struct Address {
        let family: Int32
        let address: SocketAddress
        let canonicalName: String?
    }

    let request: Request
    // Written by the worker before it signals the loop; read on the loop after.
    private(set) var addresses: [Address] = []
    private(set) var host: String?
    /// 0, or getaddrinfo's EAI_* code.
    private(set) var status: Int32 = 0
    private(set) var systemErrno: Int32 = 0
    /// Loop thread only: the fiber waiting for the job, and whether it gave up.
    var waiter: Fiber?
    var abandoned = false

    init(_ request: Request) { self.request = request }

    fileprivate func run() {
        switch request {
        case let .addresses(host, service, family, socktype, flags):
            var hints = addrinfo()
            hints.ai_family = family
            hints.ai_socktype = socktype
            hints.ai_flags = flags
            var list: UnsafeMutablePointer<addrinfo>?
            status = getaddrinfo(host, service, &hints, &list)
            if status == EAI_SYSTEM { systemErrno = errno }
            var ai = list
            while let p = ai {
                let canon = p.pointee.ai_canonname.map { String(cString: $0) }
                addresses.append(Address(family: p.pointee.ai_family, address: SocketAddress(addrinfo: p),
                                         canonicalName: canon))
                ai = p.pointee.ai_next
            }
            if let list { freeaddrinfo(list) }
        case let .names(address, flags):
            var hostBuf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            status = address.withSockaddr { sa, len in
                getnameinfo(sa, len, &hostBuf, socklen_t(hostBuf.count), nil, 0, flags)
            }
            if status == EAI_SYSTEM { systemErrno = errno }
            if status == 0 { host = cString(hostBuf) }
        }
    }
}

final class Resolver {
    private let loop: OpaquePointer
    private let async: UnsafeMutablePointer<ev_async>
    private let shared: SharedState
    /// Jobs submitted and not yet collected (loop thread only).
    private var pending = 0

    private final class SharedState: Sendable {
        let state = Mutex<(open: Bool, done: [ResolveJob])>((true, []))
    }

    init(loop: OpaquePointer) {
        self.loop = loop
        async = .allocate(capacity: 1)
        shared = SharedState()
        gs_async_init(async, resolverSignalled)
    }

    /// Starts the watcher; `runtime` receives the results.
    func attach(_ runtime: Runtime) {
        async.pointee.data = Unmanaged.passUnretained(runtime).toOpaque()
        ev_async_start(loop, async)
        ev_unref(loop)  // only pending jobs keep the loop running
    }

    func submit(_ job: ResolveJob) {
        pending += 1
        if pending == 1 { ev_ref(loop) }
        let shared = self.shared
        let signal = AsyncSignal(loop: loop, async: async)
        DispatchQueue.global().async {
            job.run()
            shared.state.withLock { state in
                guard state.open else { return }
                state.done.append(job)
                ev_async_send(signal.loop, signal.async)
            }
        }
    }

    /// Jobs finished since the last call (loop thread).
    fileprivate func collect() -> [ResolveJob] {
        let done = shared.state.withLock { state -> [ResolveJob] in
            let d = state.done
            state.done.removeAll()
            return d
        }
        pending -= done.count
        if pending == 0 && !done.isEmpty { ev_unref(loop) }
        return done
    }

    func close() {
        shared.state.withLock { $0.open = false }
        if pending == 0 { ev_ref(loop) }
        ev_async_stop(loop, async)
        async.deallocate()
    }
}

private struct AsyncSignal: @unchecked Sendable {
    let loop: OpaquePointer
    let async: UnsafeMutablePointer<ev_async>
}

private func resolverSignalled(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_async>?, _ revents: Int32) {
    let runtime = Unmanaged<Runtime>.fromOpaque(w!.pointee.data!).takeUnretainedValue()
    for job in runtime.resolver.collect() where !job.abandoned {
        guard let fiber = job.waiter, fiber.state == .parked else { continue }
        job.waiter = nil
        withExtendedLifetime(fiber) { runtime.wake(fiber, .ready(0), direct: true) }
    }
}
