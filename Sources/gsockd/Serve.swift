// `gsockd serve [CONFIG]`: serves every service of a config file (SPEC §6).
import ArgumentParser
import GSock
import Glibc
import Logging

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve every service of a config file.",
        discussion: """
            The config is checked completely before anything is bound: every mistake is \
            reported (file, key, what was expected) and gsockd exits with status 2. SIGTERM \
            and SIGINT stop accepting and drain open connections (shutdown_timeout), then exit \
            0; SIGHUP reads the config and handlers again without closing a listener (a bad \
            new config is reported and the running one goes on); SIGUSR1 writes every fiber \
            and what it waits on to stderr.
            """)

    @Argument(help: "The config file.")
    var config: String = "config/gsockd.toml"

    @Option(name: .long, help: ArgumentHelp("The admin listener's address (/metrics, /healthz, /readyz, /debug/fibers), instead of the config's `admin`.", valueName: "address"))
    var admin: String?

    @OptionGroup var logging: LogOptions

    func run() throws {
        if Supervisor.isWorker { Supervisor.becomeWorker() }
        var settings: ServerConfig
        do {
            settings = try ConfigLoader.load(path: config)
        } catch let error as ConfigError {
            logging.bootstrap()
            fail(error.problems.map(\.description).joined(separator: "\ngsockd: "), status: 2)
        }
        if let admin {
            if let problem = ConfigLoader.adminProblem(admin, in: settings) {
                logging.bootstrap()
                fail("--admin: \(problem)", status: 2)
            }
            settings.admin = admin
        }
        // With workers the supervisor holds the admin listener; a worker answers its scrapes.
        if Supervisor.isWorker { settings.admin = nil }
        logging.bootstrap(level: settings.logLevel, format: settings.logFormat)
        let logger = Logger(label: "gsockd")
        if !Supervisor.isWorker {
            for warning in settings.warnings { logger.warning("\(warning)") }
        }
        // Listeners systemd passed (SPEC §9) replace the addresses they stand for; a
        // worker has its supervisor's list.
        var activation: SocketActivation?
        var replaced: [String: [String]] = [:]
        if Supervisor.isWorker {
            replaced = SocketActivation.inheritedListen
            unsetenv(SocketActivation.workerVariable)
        } else {
            switch SocketActivation.take(for: settings) {
            case .success(.none): break
            case .success(.ignored(let why)): logger.warning("\(why)")
            case .success(.taken(let passed)):
                activation = passed
                replaced = passed.listen
                for line in passed.summary { logger.notice("\(line)") }
            case .failure(let problems):
                fail(problems.lines.map { "LISTEN_FDS: " + $0 }.joined(separator: "\ngsockd: "), status: 2)
            }
        }
        SocketActivation.apply(replaced, to: &settings)
        if settings.workers > 1 && !Supervisor.isWorker {
            let supervisor = Supervisor(workers: settings.workers, arguments: CommandLine.arguments,
                                        shutdownTimeout: settings.shutdownTimeout, logger: logger,
                                        passedListeners: activation?.descriptors ?? [:],
                                        workerEnvironment: activation?.workerEnvironment.map { [$0] } ?? [],
                                        admin: settings.admin, drainDelay: settings.drainDelay,
                                        maxRunTime: settings.maxRunTime)
            Glibc.exit(supervisor.run())
        }
        activation?.register()
        var options = Runtime.Options()
        options.useDefaultLoop = true
        options.memoryLimit = settings.memoryLimit
        options.maxRunTime = settings.maxRunTime
        options.runawayAction = settings.maxRunTimeAction
        options.logger.logLevel = logging.level(settings.logLevel)
        let runtime: Runtime
        do {
            runtime = try Runtime(options: options)
        } catch {
            fail("\(error)", status: 1)
        }
        var serveOptions = ServeOptions()
        if let index = getenv(Supervisor.workerVariable).map({ String(cString: $0) }) {
            serveOptions.announce = index == "1"
        }
        let path = config
        do {
            let outcome = try runtime.serve(config: settings, options: serveOptions) {
                var fresh = try ConfigLoader.load(path: path)
                SocketActivation.apply(replaced, to: &fresh)
                return fresh
            }
            switch outcome {
            case .finished: break
            case .failed(let message): fail(message, status: 1)
            case .badUsage(let message): fail(message, status: 2)
            }
        } catch {
            fail("\(error)", status: 1)
        }
    }
}
