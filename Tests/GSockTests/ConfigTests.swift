// Config files (SPEC §6): a good file loads with paths resolved and env converted; every
// kind of mistake is reported with the file, the line, the key path and what was expected,
// and all of them at once. Configs and handlers are written to a temporary directory, so
// that `gsockd test` discovers nothing extra. The last tests run the gsockd binary's
// `check` command.
import Foundation
import XCTest
@testable import GSock

final class ConfigTests: XCTestCase {
    /// The package root, found from this file's path.
    private let root: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/GSockTests/ConfigTests.swift
        return parts.joined(separator: "/")
    }()

    private var directory = ""

    override func setUpWithError() throws {
        directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("gsock-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: directory + "/handlers", withIntermediateDirectories: true)
        try write("handlers/echo.lua", "return function(sock) sock:send('hi') end\n")
        try write("handlers/other.lua", "return { handle = function(sock) end, name = 'other' }\n")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func write(_ name: String, _ text: String) throws {
        try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
    }

    /// Writes `toml` as gsockd.toml and loads it.
    private func load(_ toml: String) throws -> ServerConfig {
        try write("gsockd.toml", toml)
        return try ConfigLoader.load(path: directory + "/gsockd.toml")
    }

    /// Writes `toml`, expects it to be rejected, and returns its problems.
    private func problems(_ toml: String, file: StaticString = #filePath, line: UInt = #line) -> [ConfigProblem] {
        do {
            let config = try load(toml)
            XCTFail("loaded: \(config)", file: file, line: line)
            return []
        } catch let error as ConfigError {
            return error.problems
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return []
        }
    }

    /// The one problem whose key is `key`.
    private func problem(
        _ all: [ConfigProblem], key: String, file: StaticString = #filePath, line: UInt = #line
    ) -> ConfigProblem? {
        let found = all.filter { $0.key == key }
        XCTAssertEqual(found.count, 1, "problems for \(key): \(all.map(\.description))", file: file, line: line)
        return found.first
    }

    private var configPath: String { directory + "/gsockd.toml" }

    // MARK: - Good configs

    func testGoodConfigLoadsWithPathsResolvedAndEnvConverted() throws {
        let config = try load("""
            workers = 4
            log_level = "debug"
            lua_path = ["lib/?.lua", "/opt/lua/?/init.lua"]
            shutdown_timeout = 2.5
            memory_limit = "64M"
            max_run_time = 0.5
            max_run_time_action = "error"

            [services.zeta]
            listen = ["127.0.0.1:7000", "[::1]:7000", "unix:/tmp/zeta.sock", ":0", ":0"]
            handler = "handlers/../handlers/other.lua"
            max_connections = 100
            backlog = 64
            idle_timeout = 30
            nodelay = false

            [services.alpha]
            listen = ":7001"
            handler = "handlers/echo.lua"

            [services.alpha.env]
            greeting = "Hello, World!"
            port = 8080
            ratio = 0.25
            debug = true
            hosts = ["a", "b"]
            since = 2024-05-01
            db = { host = "localhost", ports = [5432, 5433] }
            """)
        XCTAssertEqual(config.path, configPath)
        XCTAssertEqual(config.workers, 4)
        XCTAssertEqual(config.logLevel, .debug)
        XCTAssertEqual(config.luaPath, [directory + "/lib/?.lua", "/opt/lua/?/init.lua"])
        XCTAssertEqual(config.shutdownTimeout, 2.5)
        XCTAssertEqual(config.memoryLimit, 64 << 20)
        XCTAssertEqual(config.maxRunTime, 0.5)
        XCTAssertEqual(config.maxRunTimeAction, .error)

        XCTAssertEqual(config.services.map(\.name), ["alpha", "zeta"], "sorted by name")
        let alpha = config.services[0], zeta = config.services[1]
        XCTAssertEqual(alpha.listen, [":7001"])
        XCTAssertEqual(alpha.handler, directory + "/handlers/echo.lua")
        XCTAssertNil(alpha.maxConnections)
        XCTAssertNil(alpha.backlog)
        XCTAssertNil(alpha.idleTimeout)
        XCTAssertTrue(alpha.nodelay)
        XCTAssertEqual(alpha.env, [
            "greeting": .string("Hello, World!"),
            "port": .integer(8080),
            "ratio": .number(0.25),
            "debug": .boolean(true),
            "hosts": .array([.string("a"), .string("b")]),
            "since": .string("2024-05-01"),
            "db": .table(["host": .string("localhost"), "ports": .array([.integer(5432), .integer(5433)])]),
        ])

        XCTAssertEqual(zeta.listen.count, 5, "port 0 twice is no collision")
        XCTAssertEqual(zeta.handler, directory + "/handlers/other.lua", "normalised")
        XCTAssertEqual(zeta.maxConnections, 100)
        XCTAssertEqual(zeta.backlog, 64)
        XCTAssertEqual(zeta.idleTimeout, 30)
        XCTAssertFalse(zeta.nodelay)
        XCTAssertEqual(zeta.env, [:])
    }

    func testDefaultsWhenOnlyServicesAreGiven() throws {
        let config = try load("""
            [services.echo]
            listen = "127.0.0.1:7000"
            handler = "handlers/echo.lua"
            """)
        XCTAssertEqual(config.workers, 1)
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertEqual(config.luaPath, [])
        XCTAssertEqual(config.shutdownTimeout, 10)
        XCTAssertEqual(config.memoryLimit, 0)
        XCTAssertEqual(config.maxRunTime, 1)
        XCTAssertEqual(config.maxRunTimeAction, .log)
    }

    func testBundledDefaultConfigLoads() throws {
        let config = try ConfigLoader.load(path: root + "/config/gsockd.toml")
        XCTAssertEqual(config.services.map(\.name), ["echo", "hello"])
        XCTAssertEqual(config.services[0].listen, ["127.0.0.1:7000"])
        XCTAssertEqual(config.services[0].handler, root + "/config/handlers/echo.lua")
        XCTAssertEqual(config.services[1].listen, ["127.0.0.1:8080"])
        XCTAssertEqual(config.services[1].handler, root + "/config/handlers/http_hello.lua")
        XCTAssertEqual(config.services[1].env["greeting"], .string("Hello, World!"))
    }

    // MARK: - Every mistake, all at once

    func testThreeDifferentMistakesAreAllReported() {
        let all = problems("""
            workers = "4"

            [services.echo]
            listen = "localhost"
            handler = "handlers/missing.lua"
            """)
        XCTAssertEqual(all.map(\.key), ["workers", "services.echo.listen", "services.echo.handler"], "in file order")
        XCTAssertEqual(all.map(\.line), [1, 4, 5])
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):1: workers: expected an integer >= 1, got string \"4\"",
            "\(configPath):4: services.echo.listen: bad address 'localhost' "
                + "(expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)",
            "\(configPath):5: services.echo.handler: handler file not found: \(directory)/handlers/missing.lua",
        ])
    }

    func testUnknownKeySuggestsTheClosestSpellingAndListsTheAllowedKeys() {
        let all = problems("""
            wrokers = 2
            [services.echo]
            listen = ":7000"
            handeler = "handlers/echo.lua"
            handler = "handlers/echo.lua"
            """)
        let top = problem(all, key: "wrokers")
        XCTAssertEqual(top?.line, 1)
        XCTAssertEqual(top?.message, "unknown key; did you mean 'workers'? (allowed: admin, drain_delay, log_format, log_level, lua_path, "
            + "max_run_time, max_run_time_action, memory_limit, services, shutdown_timeout, workers)")
        let service = problem(all, key: "services.echo.handeler")
        XCTAssertEqual(service?.line, 4)
        XCTAssertTrue(service?.message.hasPrefix("unknown key; did you mean 'handler'? (allowed: access_log, backlog, ") ?? false)
        XCTAssertEqual(all.count, 2)
    }

    func testSettingWrittenUnderAServiceHeaderSaysWhereItBelongs() {
        let all = problems("""
            [services.echo]
            listen = ":7000"
            handler = "handlers/echo.lua"
            workers = 2
            """)
        XCTAssertTrue(problem(all, key: "services.echo.workers")?.message.hasPrefix(
            "unknown key; 'workers' is a top-level setting: put it above the first [table] header") ?? false)
    }

    func testWrongTypesSayWhatWasExpectedAndWhatWasFound() {
        let all = problems("""
            shutdown_timeout = "10"
            max_run_time = 0
            log_level = "warn"
            [services.echo]
            listen = 7000
            handler = "handlers/echo.lua"
            max_connections = 1.0
            nodelay = "true"
            idle_timeout = -1
            env = "x"
            """)
        XCTAssertEqual(problem(all, key: "shutdown_timeout")?.message,
            "expected a number of seconds >= 0, got string \"10\"")
        XCTAssertEqual(problem(all, key: "max_run_time")?.message, "expected a number of seconds > 0, got integer 0")
        XCTAssertEqual(problem(all, key: "log_level")?.message,
            "expected one of \"trace\", \"debug\", \"info\", \"notice\", \"warning\", \"error\", \"critical\", "
                + "got string \"warn\" (did you mean \"warning\"?)")
        XCTAssertEqual(problem(all, key: "services.echo.listen")?.message,
            "expected an address or a non-empty array of addresses (HOST:PORT, [IPV6]:PORT, :PORT or unix:/path), "
                + "got integer 7000 (did you mean \":7000\" or \"127.0.0.1:7000\"?)")
        XCTAssertEqual(problem(all, key: "services.echo.max_connections")?.message,
            "expected an integer >= 1, got float 1.0 (write it without a decimal point)")
        XCTAssertEqual(problem(all, key: "services.echo.nodelay")?.message,
            "expected a boolean (true or false), got string \"true\" (write it without quotes)")
        XCTAssertEqual(problem(all, key: "services.echo.idle_timeout")?.message,
            "expected a number of seconds > 0, got integer -1")
        XCTAssertEqual(problem(all, key: "services.echo.env")?.message,
            "expected a table ([services.echo.env]), got string \"x\"")
        XCTAssertEqual(all.count, 8)
    }

    func testBadAddressesNameTheirPositionInTheList() {
        let all = problems("""
            [services.echo]
            listen = [
              "127.0.0.1:7000",
              "localhost",
              "[::zz]:80",
              "10.0.0.1:70000",
              "::1:80",
              "unix:",
              "300.1.1.1:80",
              "bad host:80",
              7000,
            ]
            handler = "handlers/echo.lua"
            """)
        let expected = "(expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)"
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):2: services.echo.listen[2]: bad address 'localhost' \(expected)",
            "\(configPath):2: services.echo.listen[3]: bad address '[::zz]:80' ('::zz' is not an IPv6 address)",
            "\(configPath):2: services.echo.listen[4]: bad address '10.0.0.1:70000' (port 70000 is not in 0-65535)",
            "\(configPath):2: services.echo.listen[5]: bad address '::1:80' (an IPv6 address needs brackets: [::1]:80)",
            "\(configPath):2: services.echo.listen[6]: bad address 'unix:' (a unix socket needs a path: unix:/path)",
            "\(configPath):2: services.echo.listen[7]: bad address '300.1.1.1:80' ('300.1.1.1' is not an IPv4 address)",
            "\(configPath):2: services.echo.listen[8]: bad address 'bad host:80' ('bad host' is not a host name or address)",
            "\(configPath):2: services.echo.listen[9]: expected an address string "
                + "(HOST:PORT, [IPV6]:PORT, :PORT or unix:/path), got integer 7000",
        ])
    }

    func testUnixPathLongerThanSunPathIsABadAddress() {
        let fits = "/tmp/" + String(repeating: "p", count: 102)
        let all = problems("""
            [services.echo]
            listen = ["unix:\(fits)", "unix:\(fits)q", "unix:/tmp//\(String(repeating: "r", count: 102))"]
            handler = "handlers/echo.lua"
            """)
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):2: services.echo.listen[2]: bad address 'unix:\(fits)q' "
                + "(a unix socket path is at most 107 bytes, this one is 108)",
            "\(configPath):2: services.echo.listen[3]: bad address 'unix:/tmp//\(String(repeating: "r", count: 102))' "
                + "(a unix socket path is at most 107 bytes, this one is 108)",
        ], "107 bytes fit sun_path with its NUL; the path is bound as written, '//' included")
    }

    func testMissingHandlerAndMissingListen() {
        let all = problems("""
            [services.a]
            listen = ":7000"
            handler = "handlers/nope.lua"

            [services.b]
            listen = ":7001"

            [services.c]
            handler = "handlers"
            """)
        XCTAssertEqual(problem(all, key: "services.a.handler")?.description,
            "\(configPath):3: services.a.handler: handler file not found: \(directory)/handlers/nope.lua")
        XCTAssertEqual(problem(all, key: "services.b.handler")?.description,
            "\(configPath):5: services.b.handler: missing "
                + "(expected the path of a Lua handler file, relative to the config file)")
        XCTAssertEqual(problem(all, key: "services.c.handler")?.message,
            "handler is a directory, not a Lua file: \(directory)/handlers")
        XCTAssertEqual(problem(all, key: "services.c.listen")?.line, 8, "the service's header")
        XCTAssertEqual(all.count, 4)
    }

    func testUncompilableHandlerReportsLuasFileAndLine() throws {
        try write("handlers/broken.lua", "return function(sock)\n  local x = = 1\nend\n")
        let all = problems("""
            [services.broken]
            listen = ":7000"
            handler = "handlers/broken.lua"
            """)
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):3: services.broken.handler: handler does not compile: "
                + "\(directory)/handlers/broken.lua:2: unexpected symbol near '='"
        ])
    }

    func testTwoServicesOnOneAddress() {
        let all = problems("""
            [services.a]
            listen = [":7000", "unix:/tmp/gsock-config-test.sock", "127.0.0.1:0", "127.0.0.1:9000"]
            handler = "handlers/echo.lua"

            [services.b]
            listen = ["0.0.0.0:7000", "127.0.0.1:0", "unix:/tmp//gsock-config-test.sock"]
            handler = "handlers/echo.lua"

            [services.c]
            listen = ["*:7000", "[::]:7000", "[::1]:9000", "0.0.0.0:9000"]
            handler = "handlers/echo.lua"
            """)
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):6: services.b.listen[1]: address '0.0.0.0:7000' is already used by services.a.listen[1] (':7000')",
            "\(configPath):6: services.b.listen[3]: address 'unix:/tmp//gsock-config-test.sock' is already used by "
                + "services.a.listen[2] ('unix:/tmp/gsock-config-test.sock')",
            "\(configPath):10: services.c.listen[1]: address '*:7000' is already used by services.a.listen[1] (':7000')",
            "\(configPath):10: services.c.listen[4]: address '0.0.0.0:9000' collides with services.a.listen[4] "
                + "('127.0.0.1:9000'): '0.0.0.0:9000' listens on all interfaces, '127.0.0.1:9000' included",
        ], "port 0 never collides; IPv6 and IPv4 are separate (tcp6 sockets are v6-only)")
    }

    func testMemoryLimitTakesBytesOrASizeWithAUnit() throws {
        XCTAssertEqual(ConfigReader.parseByteCount("512K"), 512 << 10)
        XCTAssertEqual(ConfigReader.parseByteCount("64M"), 64 << 20)
        XCTAssertEqual(ConfigReader.parseByteCount("1G"), 1 << 30)
        XCTAssertEqual(ConfigReader.parseByteCount(" 2 gib "), 2 << 30)
        XCTAssertEqual(ConfigReader.parseByteCount("100mb"), 100 << 20)
        XCTAssertEqual(ConfigReader.parseByteCount("4096"), 4096)
        for bad in ["", "M", "64X", "-1M", "1.5G", "99999999999999T", "64 M B"] {
            XCTAssertNil(ConfigReader.parseByteCount(bad), bad)
        }
        let service = "\n[services.echo]\nlisten = \":7000\"\nhandler = \"handlers/echo.lua\"\n"
        XCTAssertEqual(try load("memory_limit = 1048576" + service).memoryLimit, 1 << 20)
        XCTAssertEqual(try load("memory_limit = 0" + service).memoryLimit, 0)
        let all = problems("memory_limit = \"64X\"" + service)
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):1: memory_limit: expected a size in bytes: an integer >= 0, "
                + "or a string such as \"512K\", \"64M\" or \"1G\", got string \"64X\""
        ])
        XCTAssertEqual(problems("memory_limit = -5" + service).first?.message.hasSuffix("got integer -5"), true)
    }

    func testLuaPathEntriesMustBeTemplates() {
        let all = problems("""
            lua_path = ["lib", "a/?.lua;b/?.lua", 3]
            [services.echo]
            listen = ":7000"
            handler = "handlers/echo.lua"
            """)
        XCTAssertEqual(all.map(\.message), [
            "'lib' has no '?' (expected a template such as \"lib/?.lua\")",
            "'a/?.lua;b/?.lua' contains ';' (expected one template per array element)",
            "expected a template such as \"lib/?.lua\", got integer 3",
        ])
        XCTAssertEqual(all.map(\.key), ["lua_path[1]", "lua_path[2]", "lua_path[3]"])
    }

    func testTOMLSyntaxErrorHasLineAndColumn() {
        let all = problems("workers = 1\n\n[services.echo]\nlisten = \"127.0.0.1:7000\nhandler = 3\n")
        XCTAssertEqual(all.count, 1)
        XCTAssertEqual(all.first?.line, 4)
        XCTAssertNotNil(all.first?.column)
        XCTAssertTrue(all.first?.description.hasPrefix("\(configPath):4:") ?? false, all.first?.description ?? "")
        XCTAssertTrue(all.first?.message.hasPrefix("TOML syntax error: ") ?? false)
    }

    func testKeysAndValuesNestedDeeperThan32LevelsAreRefusedWithTheirLine() {
        let key33 = Array(repeating: "a", count: 33).joined(separator: ".")
        let key13 = Array(repeating: "b", count: 13).joined(separator: ".")
        let header20 = Array(repeating: "h", count: 20).joined(separator: ".")
        let cases: [(toml: String, line: Int, key: String, message: String)] = [
            ("workers = 1\n\(key33) = 1\n", 2, "a.a.a.a.a.a.a.a...", "key nested deeper than 32 levels"),
            ("[\(key33)]\n", 1, "a.a.a.a.a.a.a.a...", "key nested deeper than 32 levels"),
            ("[[\(key33)]]\n", 1, "a.a.a.a.a.a.a.a...", "key nested deeper than 32 levels"),
            ("[\(header20)]\nok = 1\n\(key13) = 1\n", 3, "h.h.h.h.h.h.h.h...", "key nested deeper than 32 levels"),
            ("x = 1\na = \(String(repeating: "[", count: 32))\(String(repeating: "]", count: 32))\n", 2, "a",
             "value nested deeper than 32 levels"),
            ("a = [\n  [1],\n  \(String(repeating: "[", count: 31))\(String(repeating: "]", count: 31)),\n]\n", 3, "a",
             "value nested deeper than 32 levels"),
            ("a = \(String(repeating: "{b = ", count: 32))1\(String(repeating: "}", count: 32))\n", 1, "a",
             "value nested deeper than 32 levels"),
            ("a = [{b = 1}, {\(key33) = 1}]\n", 1, "a", "value nested deeper than 32 levels"),
        ]
        for c in cases {
            XCTAssertEqual(problems(c.toml).map(\.description), ["\(configPath):\(c.line): \(c.key): \(c.message)"], c.toml)
        }
        let config = try? load("""
            [services.echo]
            listen = ":7000"
            handler = "handlers/echo.lua"
            [services.echo.env]
            \(Array(repeating: "e", count: 26).joined(separator: ".")) = [[{x = 1}]]
            """)
        XCTAssertNotNil(config, "32 levels (services.echo.env, 26 keys, 2 arrays, x) are allowed")
    }

    func testKeysLongerThan1024BytesAreRefused() {
        let long = String(repeating: "k", count: 1025)
        let fits = String(repeating: "k", count: 1024)
        for (toml, line) in [("\(long) = 1\n", 1), ("x = 1\n\"\(long)\" = 1\n", 2), ("[a.'\(long)']\n", 1),
                             ("a = {b = 1, \(long) = 2}\n", 1)] {
            XCTAssertEqual(problems(toml).map(\.description),
                           ["\(configPath):\(line): \(long.prefix(40))...: key longer than 1024 bytes"], toml)
        }
        XCTAssertEqual(problems("\(fits) = 1\n").map(\.message).first?.hasPrefix("unknown key"), true)
    }

    func testNoServicesAtAll() {
        XCTAssertEqual(problems("workers = 2\n").map(\.description), [
            "\(configPath): no services (expected at least one [services.NAME] table with listen and handler)"
        ])
        XCTAssertEqual(problems("[services]\n").map(\.description), [
            "\(configPath):1: services: no services (expected at least one [services.NAME] table with listen and handler)"
        ])
        XCTAssertEqual(problems("services = 3\n").map(\.message), [
            "expected a table of services ([services.NAME]), got integer 3"
        ])
    }

    func testMissingConfigFileIsOneProblem() {
        XCTAssertThrowsError(try ConfigLoader.load(path: directory + "/nope.toml")) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.problems.map(\.description), [
                "\(self.directory)/nope.toml: cannot read the config file: No such file or directory"
            ])
        }
    }

    func testQuotedServiceNamesAndLinesInsideMultilineValues() {
        let all = problems("""
            # a comment with listen = "x"
            description = '''
            [services.fake]
            listen = "nope"
            '''
            [services."my api"]
            listen = [
              ":7000",  # the public port
              "nope",
            ]
            handler = "handlers/echo.lua"
            """)
        XCTAssertEqual(all.map(\.description), [
            "\(configPath):2: description: unknown key (allowed: admin, drain_delay, log_format, log_level, lua_path, max_run_time, "
                + "max_run_time_action, memory_limit, services, shutdown_timeout, workers)",
            "\(configPath):7: services.\"my api\".listen[2]: bad address 'nope' "
                + "(expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)",
        ])
    }

    func testLuaSyntaxCheckCompilesWithoutRunning() throws {
        try write("runs.lua", "error('this must not run')\n")
        XCTAssertNoThrow(try LuaSyntax.check(file: directory + "/runs.lua"))
        try write("broken.lua", "local = 1\n")
        XCTAssertThrowsError(try LuaSyntax.check(file: directory + "/broken.lua")) { error in
            XCTAssertEqual(error as? RuntimeError, .compile("\(self.directory)/broken.lua:1: <name> expected near '='"))
        }
    }

    // MARK: - `gsockd check`, run as a program

    /// The gsockd executable built beside this test bundle.
    private func gsockdBinary() throws -> String {
        let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var candidates = [(bundle as NSString).deletingLastPathComponent + "/gsockd"]
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: root) {
            candidates += entries.filter { $0.hasPrefix(".build") }.sorted().map { root + "/" + $0 + "/debug/gsockd" }
        }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no gsockd executable among \(candidates)")
        }
        return found
    }

    private func runCheck(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try gsockdBinary())
        process.arguments = ["check"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    func testCheckCommandPrintsEveryProblemAndExits2() throws {
        try write("gsockd.toml", """
            workers = 0
            [services.a]
            listen = "localhost"
            handler = "handlers/missing.lua"
            [services.b]
            listen = ":7000"
            handler = "handlers/echo.lua"
            nodelay = 1
            """)
        let r = try runCheck(["gsockd.toml"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr.split(separator: "\n"), [
            "gsockd: gsockd.toml:1: workers: expected an integer >= 1, got integer 0",
            "gsockd: gsockd.toml:3: services.a.listen: bad address 'localhost' "
                + "(expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)",
            "gsockd: gsockd.toml:4: services.a.handler: handler file not found: handlers/missing.lua",
            "gsockd: gsockd.toml:8: services.b.nodelay: expected a boolean (true or false), got integer 1",
        ])
    }

    func testCheckCommandAcceptsAGoodConfigAndCompilesLuaFiles() throws {
        try write("gsockd.toml", """
            [services.b]
            listen = ":7000"
            handler = "handlers/echo.lua"
            [services.a]
            listen = ":7001"
            handler = "handlers/other.lua"
            """)
        let good = try runCheck(["gsockd.toml"])
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertEqual(good.stdout, "gsockd.toml: ok (2 services: a, b)\n")

        let lua = try runCheck(["handlers/echo.lua"])
        XCTAssertEqual(lua.status, 0, lua.stderr)
        XCTAssertEqual(lua.stdout, "handlers/echo.lua: ok\n")

        try write("handlers/broken.lua", "return function()\n\n  x = \nend\n")
        let broken = try runCheck(["handlers/broken.lua"])
        XCTAssertEqual(broken.status, 2)
        XCTAssertEqual(broken.stderr, "gsockd: handlers/broken.lua:4: unexpected symbol near 'end'\n")

        let bundled = try runCheck([root + "/config/gsockd.toml"])
        XCTAssertEqual(bundled.status, 0, bundled.stderr)
        XCTAssertEqual(bundled.stdout, "\(root)/config/gsockd.toml: ok (2 services: echo, hello)\n")
    }
}
