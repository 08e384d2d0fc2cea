// The gsockd command: argument parsing and the commands, nothing else.
import ArgumentParser
import GSock
import Logging
import Glibc

@main
struct GSockd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gsockd",
        abstract: "A cooperative network runtime for Lua 5.4 on libev.",
        version: Runtime.versionDescription,
        subcommands: [Run.self, Serve.self, Check.self, Test.self])

    /// As `ParsableCommand.main()`, but bad usage exits with 2 (SPEC §5) rather than 64,
    /// and so does a bare `gsockd` (no command is bad usage; the help goes to stderr).
    static func main() {
        if CommandLine.arguments.count == 1 {
            fail(helpMessage(), status: 2, prefix: false)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                fail(fullMessage(for: error), status: 2, prefix: false)
            }
            exit(withError: error)
        }
    }

    /// Logs go to stderr, one line per event, from `level` up, in `format`; a worker's
    /// lines carry its number.
    static func bootstrapLogging(level: Logger.Level = .info, format: LogFormat = .text) {
        let worker = getenv(Supervisor.workerVariable).map { String(cString: $0) }
        LoggingSystem.bootstrap { _ in LogLineHandler(format: format, level: level, worker: worker) }
    }
}

/// `--log-level` and `--log-format`, on every command.
struct LogOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Log from this level up: trace, debug, info, notice, warning, error or critical "
                                + "(default: the config's log_level, else info).", valueName: "level"))
    var logLevel: String?

    @Option(help: ArgumentHelp("Log lines as text or json, one event per line (default: the config's "
                                + "log_format, else text).", valueName: "text|json"))
    var logFormat: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got '\(logLevel)'")
        }
        if let logFormat, LogFormat(rawValue: logFormat) == nil {
            throw ValidationError("--log-format must be text or json, got '\(logFormat)'")
        }
    }

    /// The level: the flag's, else `configured`.
    func level(_ configured: Logger.Level = .info) -> Logger.Level { logLevel.flatMap { Logger.Level(rawValue: $0) } ?? configured }
    /// The format: the flag's, else `configured`.
    func format(_ configured: LogFormat = .text) -> LogFormat { logFormat.flatMap { LogFormat(rawValue: $0) } ?? configured }

    /// Starts logging with these options over the config's settings.
    func bootstrap(level configuredLevel: Logger.Level = .info, format configuredFormat: LogFormat = .text) {
        GSockd.bootstrapLogging(level: level(configuredLevel), format: format(configuredFormat))
    }
}
