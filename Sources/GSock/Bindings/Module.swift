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
        SocketBindings.register(L)

        gs_pushcfunction(L, gs_msghandler)
        let msgh = lua_gettop(L)
        try loadEmbedded(PackageResources.gsock_lua, name: "@gsock.lua")

        lua_createtable(L, 0, 40)
        luaSetFunctions(L, FiberBindings.functions + WaitBindings.functions + LogBindings.functions
                            + ProcessBindings.functions + MetricsBindings.functions,
                        fdArg: WaitBindings.fdFunctions, readArg: WaitBindings.readFunctions)
        lua_pushlightuserdata(L, gs_park_sentinel())
        luaRawSetField(L, -2, "park_sentinel")
        try pushGsockModules()
        luaRawSetField(L, -2, "modules")
        for (field, name) in [("error_metatable", ErrorValues.metatable),
                              ("fiber_metatable", FiberBindings.metatable),
                              ("io_metatable", WaitBindings.watcherMetatable),
                              ("timeout_metatable", WaitBindings.timeoutMetatable)] {
            _ = gs_getmetatable(L, name)
            luaRawSetField(L, -2, field)
        }
        guard gs_pcall(L, 1, 1, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        lua_pushvalue(L, -1)
        moduleRef = luaRef(L)  // leaves the gsock module on the stack for the socket layer
        try openSocketModule(gsock: lua_gettop(L), msgh: msgh)
        lua_settop(L, msgh - 1)
    }

    /// Loads socket.lua with the Swift socket functions, the two method tables and gsock.
    private func openSocketModule(gsock: Int32, msgh: Int32) throws {
        try loadEmbedded(PackageResources.socket_lua, name: "@socket.lua")
        lua_createtable(L, 0, 24)
        luaSetFunctions(L, SocketBindings.functions)
        // The method tables of the stream classes, for the methods socket.lua adds.
        let streams: [Socket.Class] = [.tcpMaster, .tcpClient, .tcpServer, .unixMaster, .unixClient, .unixServer,
                                       .tlsConnection]
        lua_createtable(L, Int32(streams.count), 0)
        for (i, className) in streams.enumerated() {
            _ = gs_getmetatable(L, className.rawValue)
            luaRawGetField(L, -1, "__index")
            lua_rawseti(L, -3, lua_Integer(i + 1))
            gs_pop(L, 1)
        }
        luaRawSetField(L, -2, "stream_classes")
        lua_pushvalue(L, gsock)
        guard gs_pcall(L, 2, 1, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        let socketModule = lua_gettop(L)

        try loadEmbedded(PackageResources.server_lua, name: "@server.lua")
        lua_pushvalue(L, gsock)
        lua_pushvalue(L, socketModule)
        lua_createtable(L, 0, 10)
        luaSetFunctions(L, LogBindings.functions + [("file_identity", ProcessBindings.fileIdentity),
                                                     ("accepted_peer", StreamBindings.acceptedPeer)]
                            + ProcessBindings.listenerSharing + HTTPBindings.hostFunctions
                            + MetricsBindings.hostFunctions)
        pushOpenResources(L)
        luaRawSetField(L, -2, "resources")
        lua_pushinteger(L, lua_Integer(SocketAddress.maxUnixPathBytes))
        luaRawSetField(L, -2, "unix_path_max")
        let host = lua_gettop(L)
        lua_pushvalue(L, host)
        lua_rotate(L, host - 3, 1)  // a copy below the chunk, for http.lua
        guard gs_pcall(L, 3, 0, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }

        HTTPBindings.register(L)
        try loadEmbedded(PackageResources.http_lua, name: "@http.lua")
        lua_pushvalue(L, gsock)
        lua_rotate(L, -3, -1)      // [chunk, gsock, host]
        luaRawGetField(L, gsock, "_internal")
        guard gs_pcall(L, 3, 0, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        gs_pop(L, 1)

        TLSBindings.register(L)
        try loadEmbedded(PackageResources.ssl_lua, name: "@ssl.lua")
        lua_createtable(L, 0, Int32(TLSBindings.functions.count))
        luaSetFunctions(L, TLSBindings.functions)
        try loadEmbedded(PackageResources.https_lua, name: "@ssl/https.lua")  // ssl.https, run on require
        lua_pushvalue(L, gsock)
        guard gs_pcall(L, 3, 0, msgh) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
    }

}
