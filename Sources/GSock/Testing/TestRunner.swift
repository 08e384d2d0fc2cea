// Running Lua test scripts (SPEC §7), the engine of `gsockd test`.
//
// The runner is Lua: testing.lua (busted's API, fibers, timeouts, leak clean-up),
// assertions.lua (luassert's names) and junit.lua, all embedded in the library. This
// file finds the files, hands them and the options to testing.lua, which runs as the
// main fiber of the runtime, and reads the counts back.
import CLua
import CShims

/// What `Runtime.runTests` runs, and how.
public struct TestOptions {
    /// Files and directories to search for `*_test.lua` and `*_spec.lua`.
    public var paths: [String] = ["tests"]
    /// Seconds a test (or a setup or teardown hook) may run before it fails.
    public var timeout: Double = 10
    /// A Lua pattern: only the tests whose full name matches it run.
    public var filter: String?
    /// Where to write a JUnit XML report, if anywhere.
    public var junitPath: String?
    /// List the tests (`file:line: full name`) and run nothing.
    public var listOnly = false

    public init() {}
}

/// The outcome of a test run.
public struct TestSummary: Equatable, Sendable {
    public var passed: Int
    /// Failed tests, failed setup or teardown hooks, and files that did not load.
    public var failed: Int
    public var skipped: Int

    public init(passed: Int = 0, failed: Int = 0, skipped: Int = 0) {
        self.passed = passed
        self.failed = failed
        self.skipped = skipped
    }
}

/// Why a test run could not be carried out as asked.
public enum TestRunnerError: Error, CustomStringConvertible, Equatable {
    /// A path that does not exist, a malformed --filter pattern.
    case usage(String)
    /// The tests ran, but the JUnit report could not be written.
    case report(String, TestSummary)

    public var description: String {
        switch self {
        case .usage(let m): return m
        case .report(let m, _): return m
        }
    }
}

extension Runtime {
    /// Runs the Lua test files found under `options.paths` and prints a line per test, the
    /// failures with `file:line` and messages, and last `N passed, N failed` on stdout.
    /// - Returns: the counts.
    /// - Throws: `TestRunnerError.usage` for a path that does not exist or a malformed
    ///   filter, `TestRunnerError.report` when the JUnit file cannot be written, and
    ///   `RuntimeError` if the runner itself fails.
    public func runTests(_ options: TestOptions) throws -> TestSummary {
        let files = try TestDiscovery.files(in: options.paths)
        let top = lua_gettop(L)
        lua_checkstack(L, 8)
        let hostRef: Int32
        do {
            try loadEmbedded(PackageResources.testing_lua, name: "@testing.lua")
            lua_createtable(L, 0, 12)
            let host = lua_gettop(L)
            LuaValue.array(files.map { .string($0) }).push(L)
            luaRawSetField(L, host, "files")
            lua_pushnumber(L, options.timeout)
            luaRawSetField(L, host, "timeout")
            if let filter = options.filter {
                lua_pushstring(L, filter)
                luaRawSetField(L, host, "filter")
            }
            if let junit = options.junitPath {
                lua_pushstring(L, junit)
                luaRawSetField(L, host, "junit_file")
            }
            lua_pushboolean(L, options.listOnly ? 1 : 0)
            luaRawSetField(L, host, "list")
            gs_pushbody(L, FiberBindings.liveFibers, 0, 0)
            luaRawSetField(L, host, "live_fibers")
            pushOpenResources(L)
            tracksResources = true
            luaRawSetField(L, host, "resources")
            try loadEmbedded(PackageResources.assertions_lua, name: "@assertions.lua")
            luaRawSetField(L, host, "assertions")
            try loadEmbedded(PackageResources.junit_lua, name: "@junit.lua")
            luaRawSetField(L, host, "junit_writer")
            lua_pushvalue(L, host)
            hostRef = luaRef(L)
        } catch {
            lua_settop(L, top)
            throw error
        }
        defer { luaUnref(L, hostRef) }
        _ = try runMainFiber(argumentCount: 1)

        luaPushRef(L, hostRef)
        defer { gs_pop(L, 1) }
        func integer(_ name: String) -> Int {
            luaRawGetField(L, -1, name)
            defer { gs_pop(L, 1) }
            return Int(lua_tointegerx(L, -1, nil))
        }
        func string(_ name: String) -> String? {
            luaRawGetField(L, -1, name)
            defer { gs_pop(L, 1) }
            return luaString(L, -1)
        }
        if let message = string("usage_error") { throw TestRunnerError.usage(message) }
        let summary = TestSummary(passed: integer("passed"), failed: integer("failed"), skipped: integer("skipped"))
        if let message = string("report_error") { throw TestRunnerError.report(message, summary) }
        return summary
    }
}
