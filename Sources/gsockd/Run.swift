// `gsockd run FILE.lua [-- ARGS]`: runs a Lua file as the main fiber.
import ArgumentParser
import GSock
import Glibc

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Lua file.",
        discussion: """
            The file runs as the main fiber; gsockd exits when it ends (fibers still \
            pending are abandoned: join them to wait). Its arguments are in `arg` and `...`.
            Exit status: 0 when it ends, 1 when it raises, 2 when it does not compile.
            """)

    @Argument(help: "The Lua file to run.")
    var file: String

    @Argument(parsing: .postTerminator, help: "Arguments for the script, after `--`.")
    var arguments: [String] = []

    func run() throws {
        GSockd.bootstrapLogging()
        var options = Runtime.Options()
        options.useDefaultLoop = true
        let runtime: Runtime
        do {
            runtime = try Runtime(options: options)
        } catch {
            fail("\(error)", status: 1)
        }
        do {
            if try runtime.runMain(file: file, arguments: arguments) {
                fail("\(file) returned a value: serving handlers (SPEC §5) is not built yet", status: 2)
            }
        } catch RuntimeError.compile(let message) {
            fail(message, status: 2)
        } catch {
            fail("\(error)", status: 1)
        }
    }
}

/// Prints `gsockd: message` on stderr and exits with `status`.
func fail(_ message: String, status: Int32, prefix: Bool = true) -> Never {
    fflush(nil)  // what Lua printed comes first
    let text = (prefix ? "gsockd: " : "") + message + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(status)
}
