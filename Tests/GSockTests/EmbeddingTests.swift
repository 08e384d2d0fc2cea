// A Swift program embedding the runtime (SPEC §8): Swift functions as a Lua module,
// Lua code run as fibers, errors reported to Swift.
import CLua
import XCTest
@testable import GSock

final class EmbeddingTests: XCTestCase {
    func testSwiftModuleCalledFromConcurrentFibers() throws {
        let runtime = try Runtime()
        var calls: [String] = []
        runtime.register(module: "host", functions: [
            "record": { args in
                guard case .string(let s)? = args.first else { throw HostError.badArgument }
                calls.append(s)
                return [.integer(calls.count)]
            },
            "echo": { args in args },
        ])
        try runtime.runMain(source: """
            local gsock, host = require "gsock", require "host"
            local a = gsock.spawn(function() gsock.sleep(0.02); return host.record("slow") end)
            local b = gsock.spawn(function() return host.record("fast") end)
            assert(a:get() == 2 and b:get() == 1)
            local n, s, t = host.echo(7, "x", { 1, 2, { k = true } })
            assert(n == 7 and s == "x" and t[3].k == true, "values round-trip")
            """)
        XCTAssertEqual(calls, ["fast", "slow"])
        XCTAssertEqual(runtime.fiberCount, 0)
    }

    func testValuesInterpolateAsLuaPrintsThem() throws {
        let runtime = try Runtime()
        var greeting = ""
        runtime.register(module: "host", functions: [
            "greet": { args in
                greeting = "hello, \(args.first ?? .nil)"
                return [.string(greeting)]
            },
        ])
        try runtime.runMain(source: #"assert(require("host").greet("ada") == "hello, ada")"#)
        XCTAssertEqual(greeting, "hello, ada")
        XCTAssertEqual("\(LuaValue.integer(42)) \(LuaValue.number(0.5)) \(LuaValue.number(3)) \(LuaValue.nil)",
                       "42 0.5 3.0 nil")
        XCTAssertEqual(LuaValue.number(1e100).description, "1e+100")
        XCTAssertEqual(LuaValue.array([.integer(1), .string("a\"b")]).description, #"{1, "a\"b"}"#)
        XCTAssertEqual(LuaValue.table(["b": .boolean(true), "a": .integer(1)]).description, "{a = 1, b = true}")
    }

    func testSwiftErrorBecomesLuaError() throws {
        let runtime = try Runtime()
        runtime.register(module: "host", functions: ["fail": { _ in throw HostError.badArgument }])
        try runtime.runMain(source: """
            local ok, err = pcall(require("host").fail)
            assert(not ok and err:find("fail: badArgument", 1, true), err)
            """)
    }

    func testCompileErrorNamesTheChunkAndLine() throws {
        let runtime = try Runtime()
        XCTAssertThrowsError(try runtime.runMain(source: "local x = \n = 1", name: "=broken.lua")) { error in
            guard case RuntimeError.compile(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("broken.lua:2:"), message)
        }
    }

    func testMainFiberErrorCarriesMessageAndTraceback() throws {
        let runtime = try Runtime()
        XCTAssertThrowsError(try runtime.runMain(source: """
            local function inner() error("boom") end
            inner()
            """, name: "=main.lua")) { error in
            guard case RuntimeError.failed(let message, let traceback) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(message, "main.lua:1: boom")
            XCTAssertTrue(traceback.contains("stack traceback:"), traceback)
            XCTAssertTrue(traceback.contains("main.lua:1: in "), traceback)
        }
    }

    func testSpawnedSourceRunsWithTheLoop() throws {
        let runtime = try Runtime()
        var done = false
        runtime.register(module: "host", functions: ["done": { _ in done = true; return [] }])
        try runtime.spawn(source: "require('gsock').sleep(0.01); require('host').done()")
        runtime.run()
        XCTAssertTrue(done)
    }

    func testMainFiberThatCanNeverBeWokenFails() throws {
        let runtime = try Runtime()
        XCTAssertThrowsError(try runtime.runMain(source: "gsock.event():wait()")) { error in
            XCTAssertTrue("\(error)".contains("block forever"), "\(error)")
        }
    }
}

enum HostError: Error { case badArgument }
