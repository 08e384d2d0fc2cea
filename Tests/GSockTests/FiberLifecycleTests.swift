// Fibers release everything they hold however they end, and the Swift side of the
// Lua stack stays balanced.
import CLua
import XCTest
@testable import GSock

final class FiberLifecycleTests: XCTestCase {
    func testNoFiberObjectOutlivesItsHandle() throws {
        var options = Runtime.Options()
        options.logger.logLevel = .critical  // a quarter of these fibers fail on purpose
        let runtime = try Runtime(options: options)
        try runtime.runMain(source: """
            local gsock = require "gsock"
            local fibers = {}
            for i = 1, 10000 do
              local kind = i % 4
              if kind == 0 then
                fibers[i] = gsock.spawn(function() return i end)
              elseif kind == 1 then
                fibers[i] = gsock.spawn(function() error("planned") end)
              elseif kind == 2 then
                fibers[i] = gsock.spawn(function() gsock.sleep(10) end)
              else
                fibers[i] = gsock.spawn(function() gsock.with_timeout(0.01, gsock.sleep, 10) end)
              end
            end
            gsock.sleep(0)
            for i = 2, 10000, 4 do fibers[i]:kill() end
            gsock.joinall(fibers)
            fibers = nil
            """)
        XCTAssertEqual(runtime.fiberCount, 0)
        try runtime.runMain(source: """
            collectgarbage() collectgarbage()
            local objects = gsock.stats().fiber_objects
            assert(objects == 1, objects .. " fiber objects alive; only this main fiber should be")
            """)
        XCTAssertEqual(lua_gettop(runtime.L), 0, "the main stack is balanced")
    }

    func testAbandonedFibersAreReleasedWithTheRuntime() throws {
        var runtime: Runtime? = try Runtime()
        try runtime!.runMain(source: """
            for i = 1, 100 do gsock.spawn(function() gsock.sleep(100) end) end
            gsock.sleep(0)
            """)
        XCTAssertEqual(runtime!.fiberCount, 100)
        runtime!.close()
        runtime = nil
    }

    // lua_close finalises sockets and fiber handles in no set order: a socket closed after
    // the handle of the fiber parked on it must not reach that fiber.
    func testClosingTheRuntimeWithFibersParkedOnSockets() throws {
        for _ in 0..<20 {
            var runtime: Runtime? = try Runtime()
            try runtime!.runMain(source: """
                local socket = require "socket"
                local server = assert(socket.bind("127.0.0.1", 0))
                local _, port = server:getsockname()
                for i = 1, 50 do
                  local c = assert(socket.connect("127.0.0.1", port))
                  gsock.spawn(function() c:receive("*l") end)
                  gsock.spawn(function() server:accept():receive(4) end)
                end
                gsock.sleep(0.01)
                """)
            XCTAssertEqual(runtime!.fiberCount, 100)
            runtime!.close()
            runtime = nil
        }
    }

    func testMemoryLimitFailsTheAllocatingFiberOnly() throws {
        var options = Runtime.Options()
        options.memoryLimit = 8 << 20
        let runtime = try Runtime(options: options)
        try runtime.runMain(source: """
            local hog = gsock.spawn(function()
              local t = {}
              for i = 1, 1e7 do t[i] = ("x"):rep(64) .. i end
            end)
            local ok = hog:join()
            assert(not hog:successful(), "the hog fails")
            assert(tostring(hog.error):find("not enough memory"), tostring(hog.error))
            local survivor = gsock.spawn(function() return 42 end)
            assert(survivor:get() == 42)
            """)
    }
}
