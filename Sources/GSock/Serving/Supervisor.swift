// Worker processes (SPEC §6 `workers`): the supervisor runs no Lua. It starts gsockd
// again once per worker (same arguments, GSOCKD_WORKER set), each worker binds the same
// addresses with SO_REUSEPORT, and the supervisor passes SIGTERM, SIGINT, SIGHUP and
// SIGUSR1 on to them. A worker that dies is restarted (after 0.1 s, doubling to 5 s while
// they keep dying young) and why it died is logged; one that fails while starting (an
// address in use, a handler that does not compile) stops everything with its status.
import CLibev
import CShims
import Glibc
import Logging

public final class Supervisor {
    /// The variable that tells a gsockd process it is a worker: its value is the index.
    public static let workerVariable = "GSOCKD_WORKER"

    private struct Worker {
        var pid: pid_t = 0
        var startedAt: Double = 0
        var backoff: Double = 0
        let watcher: UnsafeMutablePointer<ev_child>
        let restart: UnsafeMutablePointer<ev_timer>
    }

    private let loop: OpaquePointer
    private let count: Int
    private let arguments: [String]
    private let shutdownTimeout: Double
    private let logger: Logger
    private var workers: [Worker] = []
    private var signals: [UnsafeMutablePointer<ev_signal>] = []
    private var deadline: UnsafeMutablePointer<ev_timer>
    private var stopping = false
    private var exitStatus: Int32 = 0

    /// Whether this process is a worker started by a supervisor.
    public static var isWorker: Bool { getenv(workerVariable) != nil }

    /// - Parameters:
    ///   - workers: how many worker processes to keep running.
    ///   - arguments: the command line to start each worker with (argv[0] included).
    public init(workers: Int, arguments: [String], shutdownTimeout: Double, logger: Logger) {
        loop = gs_default_loop()
        count = workers
        self.arguments = arguments
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        deadline = .allocate(capacity: 1)
    }

    /// Starts the workers and supervises them until SIGTERM or SIGINT has stopped them all.
    /// - Returns: the exit status for the supervisor.
    public func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let me = Unmanaged.passUnretained(self).toOpaque()
        for signum in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] {
            let w = UnsafeMutablePointer<ev_signal>.allocate(capacity: 1)
            gs_signal_init(w, supervisorSignalled, signum)
            w.pointee.data = me
            ev_signal_start(loop, w)
            ev_unref(loop)
            signals.append(w)
        }
        gs_timer_init(deadline, supervisorDeadline, 0)
        deadline.pointee.data = me
        for index in 0..<count {
            let watcher = UnsafeMutablePointer<ev_child>.allocate(capacity: 1)
            let restart = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
            gs_timer_init(restart, supervisorRestart, 0)
            restart.pointee.data = me
            workers.append(Worker(watcher: watcher, restart: restart))
            start(index)
        }
        ev_run(loop, 0)
        return exitStatus
    }

    private func start(_ index: Int) {
        var pid: pid_t = 0
        var environment = ProcessInfoLite.environment.filter { !$0.hasPrefix("\(Supervisor.workerVariable)=") }
        environment.append("\(Supervisor.workerVariable)=\(index + 1)")
        let status = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, "/proc/self/exe", nil, nil, argv, envp) }
        }
        guard status == 0 else {
            logger.error("cannot start worker \(index + 1): \(String(cString: strerror(status)))")
            scheduleRestart(index)
            return
        }
        workers[index].pid = pid
        workers[index].startedAt = ev_time()
        let w = workers[index].watcher
        gs_child_init(w, supervisorChildExited, pid)
        w.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        ev_child_start(loop, w)
        logger.info("worker \(index + 1) started (pid \(pid))")
    }

    fileprivate func childExited(_ w: UnsafeMutablePointer<ev_child>) {
        ev_child_stop(loop, w)
        guard let index = workers.firstIndex(where: { $0.watcher == w }) else { return }
        let status = w.pointee.rstatus
        let pid = workers[index].pid
        workers[index].pid = 0
        let how = gs_wifsignaled(status) != 0 ? "was killed by signal \(gs_wtermsig(status))"
            : "exited with status \(gs_wexitstatus(status))"
        if stopping {
            if gs_wifexited(status) != 0 && gs_wexitstatus(status) != 0 { exitStatus = gs_wexitstatus(status) }
            if workers.allSatisfy({ $0.pid == 0 }) { finish() }
            return
        }
        let lived = ev_time() - workers[index].startedAt
        if gs_wifexited(status) != 0 && [1, 2].contains(gs_wexitstatus(status)) && lived < 2 {
            // It failed while starting (its own message says why): a restart would fail too.
            logger.error("worker \(index + 1) (pid \(pid)) \(how) while starting; stopping")
            exitStatus = gs_wexitstatus(status)
            stop(SIGTERM)
            return
        }
        logger.error("worker \(index + 1) (pid \(pid)) \(how); restarting it")
        scheduleRestart(index)
    }

    private func scheduleRestart(_ index: Int) {
        let lived = ev_time() - workers[index].startedAt
        let backoff = lived > 10 ? 0.1 : min(max(workers[index].backoff * 2, 0.1), 5)
        workers[index].backoff = backoff
        let t = workers[index].restart
        gs_timer_set(t, backoff)
        ev_timer_start(loop, t)
    }

    fileprivate func restartTimerFired(_ t: UnsafeMutablePointer<ev_timer>) {
        guard !stopping, let index = workers.firstIndex(where: { $0.restart == t }) else { return }
        start(index)
    }

    fileprivate func signalled(_ signum: Int32) {
        switch signum {
        case SIGTERM, SIGINT:
            logger.notice("signal \(signum): stopping the workers")
            stop(signum)
        default:
            for worker in workers where worker.pid > 0 { kill(worker.pid, signum) }
        }
    }

    private func stop(_ signum: Int32) {
        stopping = true
        for worker in workers {
            ev_timer_stop(loop, worker.restart)
            if worker.pid > 0 { kill(worker.pid, signum) }
        }
        if workers.allSatisfy({ $0.pid == 0 }) {
            finish()
            return
        }
        // Workers drain for up to shutdownTimeout; past that (and a grace second) they are killed.
        gs_timer_set(deadline, shutdownTimeout + 1)
        ev_timer_start(loop, deadline)
    }

    fileprivate func deadlinePassed() {
        for worker in workers where worker.pid > 0 {
            logger.error("worker pid \(worker.pid) did not stop within the shutdown timeout: killing it")
            kill(worker.pid, SIGKILL)
        }
    }

    private func finish() {
        ev_timer_stop(loop, deadline)
        for w in signals {
            ev_ref(loop)
            ev_signal_stop(loop, w)
        }
        ev_break(loop, Int32(EVBREAK_ALL))
    }
}

/// The process environment as "NAME=value" strings (without Foundation).
enum ProcessInfoLite {
    static var environment: [String] {
        var result: [String] = []
        var p = environ
        while let entry = p.pointee {
            result.append(String(cString: entry))
            p += 1
        }
        return result
    }
}

/// Calls `body` with a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func supervisor(_ data: UnsafeMutableRawPointer?) -> Supervisor {
    Unmanaged<Supervisor>.fromOpaque(data!).takeUnretainedValue()
}

private func supervisorSignalled(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_signal>?, _ revents: Int32) {
    supervisor(w!.pointee.data).signalled(w!.pointee.signum)
}

private func supervisorChildExited(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_child>?, _ revents: Int32) {
    supervisor(w!.pointee.data).childExited(w!)
}

private func supervisorRestart(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    supervisor(w!.pointee.data).restartTimerFired(w!)
}

private func supervisorDeadline(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    supervisor(w!.pointee.data).deadlinePassed()
}
