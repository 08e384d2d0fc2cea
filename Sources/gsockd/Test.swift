// `gsockd test [PATH]...`: runs Lua test scripts (SPEC §7).
import ArgumentParser
import GSock
import Glibc

struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Lua test scripts.",
        discussion: """
            Runs the *_test.lua and *_spec.lua files found under each PATH (default: tests/), \
            recursively, in sorted order; a PATH may also be a single file. Directories named \
            `fixtures` and hidden directories are not searched (a PATH given explicitly is).

            Test files use busted's API (describe, it, pending, before_each, after_each, setup, \
            teardown, finally) and luassert's assertions (assert.equals, assert.same, \
            assert.has_error, ...). Each test runs in a new fiber under the timeout; fibers it \
            leaves running are reported and killed.

            Prints a line per test (ok, FAIL or skip and its full name), each failure with \
            file:line and message, and last `N passed, N failed`. GSOCKD_BIN is set to this \
            executable, so tests can run gsockd themselves.
            Exit status: 0 when no test failed, 1 when one did, 2 for bad usage.
            """)

    @Argument(help: "Test files, or directories to search (default: tests/).")
    var paths: [String] = []

    @Option(help: ArgumentHelp("Seconds each test may run before it fails.", valueName: "seconds"))
    var timeout: Double = 10

    @Option(help: ArgumentHelp(
        "Run only the tests whose full name (describe names and test name, joined by spaces) "
            + "matches this Lua pattern.",
        valueName: "pattern"))
    var filter: String?

    @Option(help: ArgumentHelp("Also write a JUnit XML report to this file.", valueName: "file"))
    var junit: String?

    @Flag(help: "List the tests as file:line: name, and run nothing.")
    var list = false

    @OptionGroup var logging: LogOptions

    func run() throws {
        guard timeout > 0, timeout.isFinite else {
            fail("--timeout must be a positive number of seconds, got \(timeout)", status: 2)
        }
        logging.bootstrap()
        setenv("GSOCKD_BIN", executablePath(), 1)
        var options = TestOptions()
        if !paths.isEmpty { options.paths = paths }
        options.timeout = timeout
        options.filter = filter
        options.junitPath = junit
        options.listOnly = list

        var runtimeOptions = Runtime.Options()
        runtimeOptions.useDefaultLoop = true
        let summary: TestSummary
        do {
            let runtime = try Runtime(options: runtimeOptions)
            summary = try runtime.runTests(options)
        } catch TestRunnerError.usage(let message) {
            fail(message, status: 2)
        } catch TestRunnerError.report(let message, _) {
            fail(message, status: 1)
        } catch {
            fail("\(error)", status: 1)
        }
        if summary.failed > 0 { throw ExitCode.failure }
    }
}

/// The path of the running executable (for GSOCKD_BIN).
private func executablePath() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return CommandLine.arguments[0] }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
