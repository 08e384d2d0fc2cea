// Serving a config file (SPEC §6).
import CLua
import CShims

extension Runtime {
    /// Serves the services of `config` until SIGTERM or SIGINT has drained them; on SIGHUP,
    /// `reload` reads the config again (a failure is logged and the running config goes on).
    public func serve(config: ServerConfig, options: ServeOptions = ServeOptions(),
                      reload: @escaping () throws -> ServerConfig) throws -> ServeOutcome {
        try serve { L in
            ServeSpec.value(config, options).push(L)
            self.pushFunction(name: "reload") { _ in
                do {
                    return [ServeSpec.value(try reload(), options)]
                } catch let error as ConfigError {
                    return [.nil, .string(error.problems.map(\.description).joined(separator: "; "))]
                }
            }
            luaRawSetField(L, -2, "reload")
        }
    }
}

extension Runtime {
    /// Loads every service's handler file of `config` (its top level runs; `init` does not)
    /// and checks what it returns, as `gsockd check` does.
    /// - Returns: `.finished` when every handler is good, `.badUsage` with the problems.
    public func checkHandlers(config: ServerConfig) throws -> ServeOutcome {
        try run(serveFunction: "check") { L in ServeSpec.value(config, ServeOptions()).push(L) }
    }
}

/// A config as the table serve.lua reads.
enum ServeSpec {
    static func value(_ config: ServerConfig, _ options: ServeOptions) -> LuaValue {
        var services: [LuaValue] = []
        for s in config.services {
            var serverOptions: [String: LuaValue] = ["nodelay": .boolean(s.nodelay)]
            if let v = s.maxConnections { serverOptions["max_connections"] = .integer(v) }
            if let v = s.backlog { serverOptions["backlog"] = .integer(v) }
            if let v = s.idleTimeout { serverOptions["idle_timeout"] = .number(v) }
            services.append(.table([
                "name": .string(s.name),
                "listen": .array(s.listen.map { .string($0) }),
                "handler": .string(s.handler),
                "options": .table(serverOptions),
                "env": .table(s.env),
            ]))
        }
        return .table([
            "services": .array(services),
            "shutdown_timeout": .number(config.shutdownTimeout),
            "lua_path": .array(config.luaPath.map { .string($0) }),
            "reuseport": .boolean(options.reusePort),
            "announce": .boolean(options.announce),
        ])
    }
}
