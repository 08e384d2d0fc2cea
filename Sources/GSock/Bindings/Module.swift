// Opens the `gsock` module: the Swift primitives go into a table `core`, which
// gsock.lua (embedded in the library) composes into the module users require.
import CLua
import CShims

extension Runtime {
    func openModule() throws {
        lua_checkstack(L, 20)
        _ = luaL_newmetatable(L, ErrorValues.metatable)
        gs_pop(L, 1)
        FiberBindings.register(L)
        WaitBindings.register(L)

        gs_pushcfunction(L, gs_msghandler)
        let msgh = lua_gettop(L)
        let source = PackageResources.gsock_lua
        let status = source.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) {
                luaL_loadbufferx(L, $0.baseAddress, $0.count, "@gsock.lua", "t")
            }
        }
        guard status == LUA_OK else { throw RuntimeError.setup(popMessage()) }

        lua_createtable(L, 0, 40)
        luaSetFunctions(L, FiberBindings.functions + WaitBindings.functions, fdArg: WaitBindings.fdFunctions)
        lua_pushlightuserdata(L, gs_park_sentinel())
        luaRawSetField(L, -2, "park_sentinel")
        for (field, name) in [("error_metatable", ErrorValues.metatable),
                              ("fiber_metatable", FiberBindings.metatable),
                              ("io_metatable", WaitBindings.watcherMetatable),
                              ("timeout_metatable", WaitBindings.timeoutMetatable)] {
            _ = gs_getmetatable(L, name)
            luaRawSetField(L, -2, field)
        }
        guard gs_pcall(L, 1, 1, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        moduleRef = luaRef(L)
        gs_pop(L, 1)
    }
}
