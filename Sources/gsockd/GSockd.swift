// The gsockd command: argument parsing and the commands, nothing else.
import ArgumentParser
import GSock
import Logging

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

    /// Logs go to stderr, one line per event, from `level` up.
    static func bootstrapLogging(level: Logger.Level = .info) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
