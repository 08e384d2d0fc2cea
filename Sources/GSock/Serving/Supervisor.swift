// Worker processes (SPEC §6 `workers`): the supervisor runs none of the user's Lua (with
// `admin`, only the admin listener's own, Lua/supervisor_admin.lua). It starts gsockd
// again once per worker (same arguments, GSOCKD_WORKER set) and talks with each over a
// WorkerChannel. Every listener is bound once: the first worker binds it and hands it to
// the supervisor, which gives the same socket to every other worker (and to restarted
// ones), so all accept from one queue, which outlives any worker; port 0 and unix paths
// work with several workers. Worker 1 starts first; the others start once it serves.
//
// A worker that fails before the whole group first served stops everything with its
// status (a restart would fail too). Later, a worker that dies is restarted (after 0.1 s,
// doubling to 5 s while it keeps dying young) and why it died is logged, while the others
// serve. SIGTERM, SIGINT, SIGHUP and SIGUSR1 are passed on. Workers get SIGTERM when the
// supervisor dies (PR_SET_PDEATHSIG): they drain and exit instead of serving orphaned.
// The supervisor speaks to systemd for the group (READY=1 once every worker serves), and
// holds the listeners systemd passed (SocketActivation) from the start: workers get them
// on the "get ADDRESS" path like any other, and none binds them.
import CLibev
import CShims
import Glibc
import Logging

public final class Supervisor {
    /// The variable that tells a gsockd process it is a worker: its value is the index.
    public static let workerVariable = "GSOCKD_WORKER"
    /// The variable that gives a worker its supervisor's pid.
    static let supervisorVariable = "GSOCKD_SUPERVISOR"

    private struct Worker {
        var pid: pid_t = 0
        var startedAt: Double = 0
        var backoff: Double = 0
        /// Whether it said "ready" since it was started.
        var serving = false
        /// Whether it has said "ready" since the last SIGHUP was passed on.
        var reloaded = true
        var channel: Int32 = -1
        /// The supervisor's end of the admin channel (AdminChannel), with an admin listener.
        var adminChannel: Int32 = -1
        let watcher: UnsafeMutablePointer<ev_child>
        let restart: UnsafeMutablePointer<ev_timer>
        let messages: UnsafeMutablePointer<ev_io>
    }

    private struct Listener {
        let fd: Int32
        /// A unix socket's path and file identity: removed at the end if still that file.
        let socketFile: (path: String, identity: String)?
    }

    private let loop: OpaquePointer
    private let count: Int
    private let arguments: [String]
    private let shutdownTimeout: Double
    private let logger: Logger
    private let notifier = SystemdNotifier.fromEnvironment
    private var workers: [Worker] = []
    private var listeners: [String: Listener] = [:]
    private var signals: [UnsafeMutablePointer<ev_signal>] = []
    private var deadline: UnsafeMutablePointer<ev_timer>
    private var watchdog: UnsafeMutablePointer<ev_timer>
    /// Whether every worker has served once: failures before that stop the group.
    private var groupServed = false
    /// Whether a SIGHUP was passed on and not every worker has said "ready" since.
    private var reloading = false
    private var stopping = false
    private var exitStatus: Int32 = 0
    /// What each worker's environment gets besides gsockd's own variables.
    private let workerEnvironment: [String]
    /// The admin listener's address (SPEC §9), and the Lua runtime serving it.
    private let admin: String?
    private let drainDelay: Double
    private let maxRunTime: Double
    private var adminRuntime: Runtime?
    private var adminSocketFile: (path: String, identity: String)?
    /// Workers restarted after dying (gsockd_worker_restarts_total).
    private var restarts = 0

    /// Whether this process is a worker started by a supervisor.
    public static var isWorker: Bool { getenv(workerVariable) != nil }

    /// Called first in a worker: it gets SIGTERM when its supervisor dies (and exits at
    /// once if the supervisor is already gone).
    public static func becomeWorker() {
        _ = gs_set_parent_death_signal(SIGTERM)
        if let text = getenv(supervisorVariable), let pid = pid_t(String(cString: text)), getppid() != pid {
            exit(1)
        }
    }

    /// - Parameters:
    ///   - workers: how many worker processes to keep running.
    ///   - arguments: the command line to start each worker with (argv[0] included).
    ///   - passedListeners: listeners systemd passed, by address: held for the workers
    ///     (their unix socket files are systemd's, never removed here).
    ///   - workerEnvironment: "NAME=value" entries added to each worker's environment.
    ///   - admin: the admin listener's address, served by the supervisor for the group.
    ///   - drainDelay: seconds workers go on accepting after SIGTERM (drain_delay).
    ///   - maxRunTime: the workers' runaway limit, as /healthz reports it.
    public init(workers: Int, arguments: [String], shutdownTimeout: Double, logger: Logger,
                passedListeners: [String: Int32] = [:], workerEnvironment: [String] = [],
                admin: String? = nil, drainDelay: Double = 0, maxRunTime: Double = 1) {
        loop = gs_default_loop()
        count = workers
        self.arguments = arguments
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        self.workerEnvironment = workerEnvironment
        self.admin = admin
        self.drainDelay = drainDelay
        self.maxRunTime = maxRunTime
        deadline = .allocate(capacity: 1)
        watchdog = .allocate(capacity: 1)
        for (address, fd) in passedListeners { listeners[address] = Listener(fd: fd, socketFile: nil) }
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
        gs_timer_init(watchdog, supervisorWatchdog, 0)
        watchdog.pointee.data = me
        if let interval = notifier.watchdogInterval {
            watchdog.pointee.repeat = interval / 2
            ev_timer_again(loop, watchdog)
            ev_unref(loop)
        }
        for _ in 0..<count {
            let watcher = UnsafeMutablePointer<ev_child>.allocate(capacity: 1)
            let restart = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
            let messages = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
            gs_timer_init(restart, supervisorRestart, 0)
            restart.pointee.data = me
            workers.append(Worker(watcher: watcher, restart: restart, messages: messages))
        }
        if admin != nil && !startAdmin() { return 1 }
        start(0)
        ev_run(loop, 0)
        return exitStatus
    }

    // MARK: - The admin listener

    /// Starts the admin listener (supervisor_admin.lua) in a Lua runtime on the supervisor's loop.
    private func startAdmin() -> Bool {
        var options = Runtime.Options()
        options.useDefaultLoop = true
        options.logger = logger
        do {
            let runtime = try Runtime(options: options)
            runtime.register(module: "gsockd.channel", bodies: AdminChannel.functions)
            runtime.register(module: "gsockd.supervisor", functions: [
                "settings": { [unowned self] _ in
                    [.string(self.admin ?? ""), .number(1), .number(self.maxRunTime)]
                },
                "workers": { [unowned self] _ in
                    [.array(self.workers.enumerated().compactMap { i, w in
                        w.adminChannel >= 0 && w.serving
                            ? .table(["index": .integer(i + 1), "fd": .integer(Int(w.adminChannel))]) : nil
                    })]
                },
                "count": { [unowned self] _ in [.integer(self.count)] },
                "restarts": { [unowned self] _ in [.integer(self.restarts)] },
                "state": { [unowned self] _ in
                    [.string(self.stopping ? "draining" : !self.groupServed ? "starting" : "serving")]
                },
                "started": { [unowned self] args in
                    guard case .string(let a)? = args.first else { return [] }
                    self.logger.info("admin listening on \(a)")
                    // A unix socket's file is removed at the end, if it is still this one.
                    if a.hasPrefix("unix:"), case .success(let identity) = FileIdentity.of(String(a.dropFirst(5))) {
                        self.adminSocketFile = (String(a.dropFirst(5)), identity.id)
                    }
                    return []
                },
                "failed": { [unowned self] args in
                    if case .string(let m)? = args.first { self.logger.error("\(m)") }
                    self.exitStatus = 1
                    self.stop(SIGTERM)
                    return []
                },
            ])
            try runtime.spawn(source: String(decoding: PackageResources.supervisor_admin_lua, as: UTF8.self),
                              name: "@supervisor_admin.lua")
            adminRuntime = runtime
            return true
        } catch {
            logger.error("admin: \(error)")
            return false
        }
    }

    private func start(_ index: Int) {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            logger.error("cannot start worker \(index + 1): socketpair: \(String(cString: strerror(errno)))")
            scheduleRestart(index)
            return
        }
        let (mine, theirs) = (ends[0], ends[1])
        _ = fcntl(theirs, F_SETFD, 0)  // the worker inherits its end; the supervisor closes it below
        // systemd hears from the supervisor only (NotifyAccess=main).
        let own = [Supervisor.workerVariable, Supervisor.supervisorVariable, WorkerChannel.variable,
                   AdminChannel.variable, "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                   SocketActivation.workerVariable].map { $0 + "=" }
        var environment = ProcessInfoLite.environment.filter { entry in !own.contains { entry.hasPrefix($0) } }
        environment += ["\(Supervisor.workerVariable)=\(index + 1)", "\(Supervisor.supervisorVariable)=\(getpid())",
                        "\(WorkerChannel.variable)=\(theirs)"] + workerEnvironment
        let adminEnds = admin != nil ? AdminChannel.pair() : nil
        if let (_, workerEnd) = adminEnds { environment.append("\(AdminChannel.variable)=\(workerEnd)") }
        var pid: pid_t = 0
        let status = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, "/proc/self/exe", nil, nil, argv, envp) }
        }
        Glibc.close(theirs)
        if let (_, workerEnd) = adminEnds { Glibc.close(workerEnd) }
        guard status == 0 else {
            Glibc.close(mine)
            if let (supervisorEnd, _) = adminEnds { Glibc.close(supervisorEnd) }
            logger.error("cannot start worker \(index + 1): \(String(cString: strerror(status)))")
            scheduleRestart(index)
            return
        }
        workers[index].pid = pid
        workers[index].startedAt = ev_time()
        workers[index].serving = false
        workers[index].reloaded = true
        workers[index].channel = mine
        workers[index].adminChannel = adminEnds?.0 ?? -1
        let me = Unmanaged.passUnretained(self).toOpaque()
        let w = workers[index].watcher
        gs_child_init(w, supervisorChildExited, pid)
        w.pointee.data = me
        ev_child_start(loop, w)
        let m = workers[index].messages
        gs_io_init(m, supervisorMessage, mine, Int32(GS_EV_READ))
        m.pointee.data = me
        ev_io_start(loop, m)
        logger.info("worker \(index + 1) started (pid \(pid))")
    }

    // MARK: - The channel

    fileprivate func messageArrived(_ m: UnsafeMutablePointer<ev_io>) {
        guard let index = workers.firstIndex(where: { $0.messages == m }) else { return }
        let channel = workers[index].channel
        guard let (text, fd) = WorkerChannel.receive(channel) else {
            closeChannel(index)  // the worker is gone; its exit is handled by the child watcher
            return
        }
        if text == "ready" {
            WorkerChannel.send(channel, "ok")
            workerServes(index)
        } else if text == "ticket-keys" {
            WorkerChannel.send(channel, TicketKeys.encode(TicketKeys.shared))
        } else if text.hasPrefix("get ") {
            let key = String(text.dropFirst(4))
            if let listener = listeners[key] {
                WorkerChannel.send(channel, "fd", passing: listener.fd)
            } else {
                WorkerChannel.send(channel, "none")
            }
        } else if text.hasPrefix("put "), fd >= 0 {
            let fields = text.dropFirst(4).split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(fields[0])
            if listeners[key] != nil || stopping {
                Glibc.close(fd)
                WorkerChannel.send(channel, "no")
            } else {
                let identity = fields.count > 1 ? String(fields[1]) : ""
                let path = key.hasPrefix("unix:") && !identity.isEmpty ? String(key.dropFirst(5)) : nil
                listeners[key] = Listener(fd: fd, socketFile: path.map { ($0, identity) })
                WorkerChannel.send(channel, "ok")
            }
        } else {
            if fd >= 0 { Glibc.close(fd) }
            logger.error("worker \(index + 1) sent an unknown message: \(text)")
            WorkerChannel.send(channel, "no")
        }
    }

    private func closeChannel(_ index: Int) {
        guard workers[index].channel >= 0 else { return }
        ev_io_stop(loop, workers[index].messages)
        Glibc.close(workers[index].channel)
        workers[index].channel = -1
        if workers[index].adminChannel >= 0 {
            adminRuntime?.descriptorClosing(workers[index].adminChannel)  // an ask waiting on it ends
            Glibc.close(workers[index].adminChannel)
            workers[index].adminChannel = -1
        }
    }

    private func workerServes(_ index: Int) {
        let first = !workers[index].serving
        workers[index].serving = true
        workers[index].reloaded = true
        if first && !groupServed {
            if index == 0 {
                for other in 1..<count { start(other) }  // worker 1 has bound every listener
            }
            if workers.allSatisfy(\.serving) {
                groupServed = true
                logger.info("all \(count) workers serve")
                notifier.notify("READY=1\nSTATUS=serving with \(count) workers")
            }
        } else if reloading && workers.allSatisfy({ $0.pid == 0 || $0.reloaded }) && !stopping {
            reloading = false
            notifier.notify("READY=1\nSTATUS=serving with \(count) workers")
        }
    }

    // MARK: - Workers that end

    fileprivate func childExited(_ w: UnsafeMutablePointer<ev_child>) {
        ev_child_stop(loop, w)
        guard let index = workers.firstIndex(where: { $0.watcher == w }) else { return }
        closeChannel(index)
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
        if !groupServed {
            // The group's first start failed (the worker's own message says why): a
            // restart would fail the same way.
            logger.error("worker \(index + 1) (pid \(pid)) \(how) while starting; stopping")
            exitStatus = gs_wifexited(status) != 0 ? gs_wexitstatus(status) : 1
            stop(SIGTERM)
            return
        }
        let delay = scheduleRestart(index)
        restarts += 1
        logger.error("worker \(index + 1) (pid \(pid)) \(how); restarting it in \(delay) s")
    }

    @discardableResult
    private func scheduleRestart(_ index: Int) -> Double {
        let lived = ev_time() - workers[index].startedAt
        let backoff = lived > 10 ? 0.1 : min(max(workers[index].backoff * 2, 0.1), 5)
        workers[index].backoff = backoff
        let t = workers[index].restart
        gs_timer_set(t, backoff)
        ev_timer_start(loop, t)
        return backoff
    }

    fileprivate func restartTimerFired(_ t: UnsafeMutablePointer<ev_timer>) {
        guard !stopping, let index = workers.firstIndex(where: { $0.restart == t }) else { return }
        start(index)
    }

    // MARK: - Signals and the end

    fileprivate func signalled(_ signum: Int32) {
        switch signum {
        case SIGTERM, SIGINT:
            logger.notice("signal \(signum): stopping the workers")
            stop(signum)
        case SIGHUP:
            notifier.notify("RELOADING=1\nSTATUS=reloading")
            reloading = true
            // One still starting loads the new code anyway, and could die of the signal.
            for i in workers.indices where workers[i].pid > 0 && workers[i].serving {
                workers[i].reloaded = false
                kill(workers[i].pid, signum)
            }
        default:
            for worker in workers where worker.pid > 0 && worker.serving { kill(worker.pid, signum) }
        }
    }

    private func stop(_ signum: Int32) {
        guard !stopping else { return }
        stopping = true
        notifier.notify("STOPPING=1\nSTATUS=draining for up to \(shutdownTimeout) s")
        // No new connection is queued for workers that no longer accept.
        for listener in listeners.values { Glibc.close(listener.fd) }
        for worker in workers {
            ev_timer_stop(loop, worker.restart)
            if worker.pid > 0 { kill(worker.pid, signum) }
        }
        if workers.allSatisfy({ $0.pid == 0 }) {
            finish()
            return
        }
        // Workers drain for up to shutdownTimeout; past that (and a grace second) they are killed.
        gs_timer_set(deadline, drainDelay + shutdownTimeout + 1)
        ev_timer_start(loop, deadline)
    }

    fileprivate func deadlinePassed() {
        for worker in workers where worker.pid > 0 {
            logger.error("worker pid \(worker.pid) did not stop within the shutdown timeout: killing it")
            kill(worker.pid, SIGKILL)
        }
    }

    fileprivate func watchdogTimerFired() {
        notifier.notify("WATCHDOG=1")
    }

    private func finish() {
        ev_timer_stop(loop, deadline)
        if notifier.watchdogInterval != nil {
            ev_ref(loop)
            ev_timer_stop(loop, watchdog)
        }
        for file in listeners.values.compactMap(\.socketFile) + (adminSocketFile.map { [$0] } ?? []) {
            if case .success(let now) = FileIdentity.of(file.path), now.kind == .socket, now.id == file.identity {
                unlink(file.path)
            }
        }
        listeners = [:]
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

private func supervisorMessage(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_io>?, _ revents: Int32) {
    supervisor(w!.pointee.data).messageArrived(w!)
}

private func supervisorRestart(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    supervisor(w!.pointee.data).restartTimerFired(w!)
}

private func supervisorDeadline(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    supervisor(w!.pointee.data).deadlinePassed()
}

private func supervisorWatchdog(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    supervisor(w!.pointee.data).watchdogTimerFired()
}
