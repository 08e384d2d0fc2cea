// `gsockd run FILE.lua [-- ARGS]`: runs a Lua file as the main fiber.
import ArgumentParser
import GSock
import Logging
import Glibc

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Lua file: a script, or a handler to serve.",
        discussion: """
            A file that returns nothing is a script: it runs as the main fiber and gsockd \
            exits when it ends (fibers still pending are abandoned: join them to wait). A file \
            that returns a handler (a function(sock, peer), or a table with `handle`) is \
            served on each --listen address (default: the handler's `listen`, else \
            127.0.0.1:7000) until SIGTERM or SIGINT. The script's arguments come after `--`.
            Exit status: 0 when it ends or has drained, 1 when it raises or an address is in \
            use, 2 when it does not compile or is not a handler.
            """)

    @Argument(help: "The Lua file to run.")
    var file: String

    @Option(name: .long, help: ArgumentHelp("An address to serve on: HOST:PORT, [IPV6]:PORT, :PORT or unix:/PATH (repeatable).", valueName: "address"))
    var listen: [String] = []

    @Option(name: .long, help: "Worker processes sharing the listeners.")
    var workers: Int = 1

    @Option(name: .long, help: "Seconds to drain open connections after SIGTERM or SIGINT.")
    var shutdownTimeout: Double = 10

    @Option(name: .long, help: ArgumentHelp("Bytes the Lua state may hold (suffixes K, M, G); an allocation past it fails the fiber that made it.", valueName: "bytes"))
    var memoryLimit: String?

    @Option(name: .long, help: "Seconds a fiber may run without yielding before it is reported.")
    var maxRunTime: Double = 1

    @Option(name: .long, help: ArgumentHelp("What to do with a fiber past --max-run-time: log (its traceback) or error (raise in it).", valueName: "log|error"))
    var maxRunTimeAction: String = "log"

    @Option(name: .long, help: ArgumentHelp("The admin listener's address (/metrics, /healthz, /readyz, /debug/fibers).", valueName: "address"))
    var admin: String?

    @Option(name: .long, help: "Seconds between SIGTERM and the end of accepting, while /readyz fails.")
    var drainDelay: Double = 0

    @OptionGroup var logging: LogOptions

    @Argument(parsing: .postTerminator, help: "Arguments for the script, after `--`.")
    var arguments: [String] = []

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        guard shutdownTimeout >= 0 else { throw ValidationError("--shutdown-timeout must not be negative") }
        guard maxRunTime > 0 else { throw ValidationError("--max-run-time must be positive") }
        if let memoryLimit, byteCount(memoryLimit) == nil {
            throw ValidationError("--memory-limit must be a number of bytes, with an optional K, M or G suffix")
        }
        guard drainDelay >= 0 else { throw ValidationError("--drain-delay must not be negative") }
        if let admin, let problem = ListenAddressCheck.problem(admin) {
            throw ValidationError("--admin: \(problem)")
        }
        guard RunawayAction(rawValue: maxRunTimeAction) != nil else {
            throw ValidationError("--max-run-time-action must be 'log' or 'error'")
        }
    }

    func run() throws {
        if Supervisor.isWorker { Supervisor.becomeWorker() }
        logging.bootstrap()
        if workers > 1 && !Supervisor.isWorker {
            let supervisor = Supervisor(workers: workers, arguments: CommandLine.arguments,
                                        shutdownTimeout: shutdownTimeout, logger: Logger(label: "gsockd"),
                                        admin: admin, drainDelay: drainDelay, maxRunTime: maxRunTime)
            Glibc.exit(supervisor.run())
        }
        var options = Runtime.Options()
        options.useDefaultLoop = true
        options.maxRunTime = maxRunTime
        options.runawayAction = RunawayAction(rawValue: maxRunTimeAction) ?? .log
        options.memoryLimit = memoryLimit.flatMap(byteCount) ?? 0
        options.logger.logLevel = logging.level()
        let runtime: Runtime
        do {
            runtime = try Runtime(options: options)
        } catch {
            fail("\(error)", status: 1)
        }
        var serveOptions = ServeOptions()
        serveOptions.listen = listen.isEmpty ? nil : listen
        serveOptions.shutdownTimeout = shutdownTimeout
        serveOptions.drainDelay = drainDelay
        serveOptions.maxRunTime = maxRunTime
        if !Supervisor.isWorker { serveOptions.admin = admin }
        if let index = getenv(Supervisor.workerVariable).map({ String(cString: $0) }) {
            serveOptions.announce = index == "1"
        }
        do {
            switch try runtime.runOrServe(file: file, arguments: arguments, options: serveOptions) {
            case .finished: break
            case .failed(let message): fail(message, status: 1)
            case .badUsage(let message): fail(message, status: 2)
            }
        } catch RuntimeError.compile(let message) {
            fail(message, status: 2)
        } catch {
            fail("\(error)", status: 1)
        }
    }
}

/// "512", "64K", "64M", "1G" as bytes.
func byteCount(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    var digits = Substring(text.uppercased())
    var unit = 1
    if let last = digits.last, let u = units[last] {
        unit = u
        digits = digits.dropLast()
    }
    guard let n = Int(digits), n > 0 else { return nil }
    return n * unit
}

/// Prints `gsockd: message` on stderr and exits with `status`.
func fail(_ message: String, status: Int32, prefix: Bool = true) -> Never {
    fflush(nil)  // what Lua printed comes first
    let text = (prefix ? "gsockd: " : "") + message + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

/// Prints `message` on stderr.
func printError(_ message: String) {
    fflush(nil)
    let text = message + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
