// A config as serve.lua reads it (SPEC §6): `Runtime.serve(config:)` and
// `checkHandlers(config:)` pass it to serve.lua's functions.

/// A config as the table serve.lua reads.
enum ServeSpec {
    static func value(_ config: ServerConfig, _ options: ServeOptions) -> LuaValue {
        var services: [LuaValue] = []
        for s in config.services {
            var serverOptions: [String: LuaValue] = ["nodelay": .boolean(s.nodelay)]
            if let v = s.maxConnections { serverOptions["max_connections"] = .integer(v) }
            if let v = s.backlog { serverOptions["backlog"] = .integer(v) }
            if let v = s.idleTimeout { serverOptions["idle_timeout"] = .number(v) }
            if let v = s.tls { serverOptions["tls"] = .table(v) }
            serverOptions.merge(s.http) { _, http in http }
            services.append(.table([
                "name": .string(s.name),
                "listen": .array(s.listen.map { .string($0) }),
                "handler": .string(s.handler),
                "options": .table(serverOptions),
                "env": .table(s.env),
            ]))
        }
        var spec: [String: LuaValue] = [
            "services": .array(services),
            "shutdown_timeout": .number(config.shutdownTimeout),
            "lua_path": .array(config.luaPath.map { .string($0) }),
            "reuseport": .boolean(options.reusePort),
            "announce": .boolean(options.announce),
            "drain_delay": .number(config.drainDelay),
            "max_run_time": .number(config.maxRunTime),
        ]
        if let admin = options.admin ?? config.admin { spec["admin"] = .string(admin) }
        return .table(spec)
    }
}
