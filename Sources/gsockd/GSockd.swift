// The gsockd command: argument parsing and the commands, nothing else.
import ArgumentParser
import GSock
import Logging

@main
struct GSockd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gsockd",
        abstract: "A cooperative network runtime for Lua 5.4 on libev.",
        subcommands: [Run.self, Test.self])

    static func bootstrapLogging() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
    }
}
