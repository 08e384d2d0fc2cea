// The registry of open resources: what holds a descriptor or a listener (sockets,
// servers) is entered here while it is open, so that `gsockd test` can report and close
// what a test leaves open (SPEC §7), as it kills the fibers a test leaves running.
//
// The registry is a Lua table in the Lua registry under "gsock.resources", mapping each
// open object to a description such as "tcp client 127.0.0.1:40312 -> 127.0.0.1:7000".
// Its keys are weak: an object that was collected is no longer open. Whoever opens a
// resource sets `resources[obj] = description`, and sets it to nil on close; the test
// runner closes a leaked object with its `close` method (or `__close`).
import CLua
import CShims

extension Runtime {
    static let openResourcesKey = "gsock.resources"

    /// Pushes the registry of open resources, creating it on first use.
    func pushOpenResources(_ L: LuaState) {
        lua_checkstack(L, 4)
        if luaRawGetField(L, gs_registryindex(), Runtime.openResourcesKey) == LUA_TTABLE { return }
        gs_pop(L, 1)
        lua_createtable(L, 0, 0)
        lua_createtable(L, 0, 1)
        lua_pushstring(L, "k")
        luaRawSetField(L, -2, "__mode")
        lua_setmetatable(L, -2)
        lua_pushvalue(L, -1)
        luaRawSetField(L, gs_registryindex(), Runtime.openResourcesKey)
    }
}
