// Running a chunk as the main fiber: `gsockd run script.lua`, and Swift programs
// that embed the runtime (`runMain`, in Embedding/Runtime+API.swift). As in gevent, the
// process's work is done when the main fiber ends; fibers still pending are abandoned.
import CLibev
import CLua
import CShims

extension Runtime {
    /// Compiles a file and pushes the chunk.
    func loadFile(_ path: String) throws {
        lua_checkstack(L, 4)
        guard luaL_loadfilex(L, path, nil) == LUA_OK else {
            throw RuntimeError.compile(popMessage())
        }
    }

    func loadString(_ source: String, name: String) throws {
        lua_checkstack(L, 4)
        let status = source.withCString { luaL_loadbufferx(L, $0, strlen($0), name, "t") }
        guard status == LUA_OK else { throw RuntimeError.compile(popMessage()) }
    }

    func setArgTable(script: String, arguments: [String]) {
        lua_createtable(L, Int32(arguments.count), 1)
        lua_pushstring(L, script)
        lua_rawseti(L, -2, 0)
        for (i, a) in arguments.enumerated() {
            lua_pushstring(L, a)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        lua_rawgeti(L, gs_registryindex(), lua_Integer(LUA_RIDX_GLOBALS))
        lua_rotate(L, -2, 1)
        luaRawSetField(L, -2, "arg")
        gs_pop(L, 1)
    }

    /// Runs the chunk on top of the stack as the main fiber; true if it returned a value.
    func runMainChunk(arguments: [String]) throws -> Bool {
        lua_checkstack(L, Int32(arguments.count) + 4)
        for a in arguments { lua_pushstring(L, a) }
        return try runMainFiber(argumentCount: Int32(arguments.count)).count > 0
    }

    /// Runs the function below the top `argumentCount` values (its arguments, which may be
    /// any Lua values) as the main fiber until it ends, and returns what it returned.
    @discardableResult
    func runMainFiber(argumentCount: Int32) throws -> MainResults {
        lua_checkstack(L, 4)
        let fiber = makeFiber(from: L, count: argumentCount + 1)
        let handle = luaRef(L)
        defer {
            luaUnref(L, handle)
            mainRun.fiber = nil
        }
        mainRun = MainRun(fiber: fiber)
        enqueue(fiber)
        while mainRun.outcome == nil && !mainRun.stopRequested {
            ev_run(loop, 0)
            if mainRun.outcome == nil && !mainRun.stopRequested && fiber.state == .parked {
                // Nothing is left that could wake the main fiber (gevent's LoopExit).
                lua_pushstring(L, "this operation would block forever: no fiber, timer or descriptor is left to wake it")
                interrupt(fiber, error: luaRef(L), direct: true)
            }
        }
        if case .failure(let message, let traceback) = mainRun.outcome {
            throw RuntimeError.failed(message: message, traceback: traceback)
        }
        let top = lua_gettop(L)
        defer { lua_settop(L, top) }
        luaPushRef(L, handle)
        guard lua_getiuservalue(L, -1, 1) == LUA_TTABLE else { return MainResults(count: 0, values: []) }
        let results = lua_gettop(L)
        luaRawGetField(L, results, "n")
        let n = min(max(Int(lua_tointegerx(L, -1, nil)), 0), 1_000_000)
        var values: [LuaValue] = []
        var firstIsNil = true
        for i in 0..<n {
            lua_rawgeti(L, results, lua_Integer(i + 1))
            if i == 0 { firstIsNil = lua_type(L, -1) == LUA_TNIL }
            values.append(LuaValue.read(L, -1))
            gs_pop(L, 1)
        }
        return MainResults(count: firstIsNil ? 0 : n, values: values)
    }

    /// Compiles Lua source embedded in the library and pushes the chunk.
    func loadEmbedded(_ source: [UInt8], name: String) throws {
        lua_checkstack(L, 4)
        let status = source.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { luaL_loadbufferx(L, $0.baseAddress, $0.count, name, "t") }
        }
        guard status == LUA_OK else { throw RuntimeError.setup(popMessage()) }
    }
}

extension Runtime {
    /// The run of the main fiber: the fiber, how it ended, and whether `stop()` ended the
    /// loop before it did.
    struct MainRun {
        var fiber: Fiber?
        var outcome: MainOutcome?
        var stopRequested = false
    }
}

/// How the main fiber ended.
enum MainOutcome {
    case success
    case failure(message: String, traceback: String)
}

/// What the main fiber returned.
struct MainResults {
    /// How many values it returned (0 when the first is nil).
    let count: Int
    /// The values as Swift sees them (functions and userdata read as nil).
    let values: [LuaValue]
}
