// The modules gsock.lua composes the `gsock` module from (Sources/GSock/Lua/gsock/,
// embedded by Package.swift's resources). Each is loaded here but not run: gsock.lua
// runs each with what it needs, so none is in package.loaded or package.preload, where
// users could require it.
import CLua
import CShims

enum EmbeddedLua {
    /// The modules, by the name gsock.lua reads them under in `core.modules`.
    static let gsockModules: [(name: String, source: [UInt8])] = [
        ("errors", PackageResources.errors_lua), ("timeouts", PackageResources.timeouts_lua),
        ("fibers", PackageResources.fibers_lua), ("sync", PackageResources.sync_lua),
        ("waits", PackageResources.waits_lua), ("stats", PackageResources.stats_lua),
        ("log", PackageResources.log_lua), ("coroutines", PackageResources.coroutines_lua),
        ("metrics", PackageResources.metrics_lua),
    ]

    /// Their chunk names as tracebacks print them ("gsock/errors.lua").
    static let gsockModuleChunks = gsockModules.map { "gsock/\($0.name).lua" }
}

extension Runtime {
    /// Pushes the table `core.modules`: each of `EmbeddedLua.gsockModules`, loaded, by name.
    func pushGsockModules() throws {
        lua_checkstack(L, 3)
        lua_createtable(L, 0, Int32(EmbeddedLua.gsockModules.count))
        for (module, chunk) in zip(EmbeddedLua.gsockModules, EmbeddedLua.gsockModuleChunks) {
            try loadEmbedded(module.source, name: "@" + chunk)
            luaRawSetField(L, -2, module.name)
        }
    }
}
