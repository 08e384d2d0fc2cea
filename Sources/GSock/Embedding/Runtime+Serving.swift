// Serving from Swift: `gsockd run handler.lua` and `gsockd serve CONFIG` run serve.lua
// (embedded) as the main fiber; it serves until SIGTERM or SIGINT has drained.
import CLua
import CShims

/// How serving ended.
public enum ServeOutcome: Equatable {
    /// The script ended, or the server drained after SIGTERM/SIGINT.
    case finished
    /// A runtime failure (an address in use, an init that raised): exit status 1.
    case failed(String)
    /// A handler file that does not load or return a handler: exit status 2.
    case badUsage(String)
}

/// Options of `runOrServe`.
public struct ServeOptions {
    /// Addresses to listen on instead of the handler's own `listen` (default 127.0.0.1:7000).
    public var listen: [String]?
    /// Seconds to drain open connections after SIGTERM/SIGINT.
    public var shutdownTimeout: Double = 10
    /// Set SO_REUSEPORT on the listeners (for processes other than gsockd's own workers,
    /// which share one socket per address).
    public var reusePort = false
    /// Print `listening on ADDRESS (NAME)` for each listener (one worker of several does).
    public var announce = true
    /// The admin listener's address (SPEC §9); for a config, instead of its `admin`.
    public var admin: String?
    /// Seconds between SIGTERM and the end of accepting (`gsockd run`; a config has `drain_delay`).
    public var drainDelay: Double = 0
    /// The runaway limit, for /healthz (a config has `max_run_time`).
    public var maxRunTime: Double = 1

    public init() {}
}

extension Runtime {
    /// Runs a Lua file as the main fiber (SPEC §1): if it returns a handler (§5), serves
    /// it until SIGTERM or SIGINT has drained the open connections.
    /// - Throws: `RuntimeError.compile` when the file does not compile, `RuntimeError.failed`
    ///   when the script raised.
    public func runOrServe(file path: String, arguments: [String] = [], options: ServeOptions = ServeOptions()) throws
        -> ServeOutcome {
        try loadFile(path)
        let chunk = lua_gettop(L)
        setArgTable(script: path, arguments: arguments)
        try pushServeFunction("run")
        lua_pushvalue(L, chunk)
        gs_remove(L, chunk)
        lua_createtable(L, 0, 4)
        lua_pushstring(L, path)
        luaRawSetField(L, -2, "file")
        if let listen = options.listen {
            LuaValue.array(listen.map { .string($0) }).push(L)
            luaRawSetField(L, -2, "listen")
        }
        lua_pushnumber(L, options.shutdownTimeout)
        luaRawSetField(L, -2, "shutdown_timeout")
        lua_pushboolean(L, options.reusePort ? 1 : 0)
        luaRawSetField(L, -2, "reuseport")
        lua_pushboolean(L, options.announce ? 1 : 0)
        luaRawSetField(L, -2, "announce")
        if let admin = options.admin {
            lua_pushstring(L, admin)
            luaRawSetField(L, -2, "admin")
        }
        lua_pushnumber(L, options.drainDelay)
        luaRawSetField(L, -2, "drain_delay")
        lua_pushnumber(L, options.maxRunTime)
        luaRawSetField(L, -2, "max_run_time")
        lua_checkstack(L, Int32(arguments.count) + 2)
        for a in arguments { lua_pushstring(L, a) }
        return outcome(try runMainFiber(argumentCount: 2 + Int32(arguments.count)))
    }

    /// Serves the services of a config spec (a Lua table built by `pushSpec`) until
    /// SIGTERM or SIGINT; `reload` reads the spec again on SIGHUP.
    func serve(pushSpec: (LuaState) -> Void) throws -> ServeOutcome {
        try run(serveFunction: "serve", pushSpec: pushSpec)
    }

    /// Runs serve.lua's function `name` with the spec as its argument, as the main fiber.
    func run(serveFunction name: String, pushSpec: (LuaState) -> Void) throws -> ServeOutcome {
        try pushServeFunction(name)
        pushSpec(L)
        return outcome(try runMainFiber(argumentCount: 1))
    }

    /// Pushes serve.lua's function `name`.
    private func pushServeFunction(_ name: String) throws {
        try loadEmbedded(PackageResources.serve_lua, name: "@serve.lua")
        luaPushRef(L, moduleRef)
        lua_createtable(L, 0, 2)
        luaSetFunctions(L, LogBindings.functions + ProcessBindings.functions + MetricsBindings.functions
                            + AdminChannel.functions)
        guard gs_pcall(L, 2, 1, 0) == LUA_OK else { throw RuntimeError.setup(popMessage()) }
        luaRawGetField(L, -1, name)
        gs_remove(L, -2)
    }

    private func outcome(_ results: MainResults) -> ServeOutcome {
        guard results.count > 0, case .string(let status)? = results.values.first else { return .finished }
        var message = ""
        if results.values.count > 1, case .string(let m) = results.values[1] { message = m }
        return status == "usage" ? .badUsage(message) : .failed(message)
    }
}

// MARK: - Serving a config file (SPEC §6)

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

    /// Loads every service's handler file of `config` (its top level runs; `init` does not)
    /// and checks what it returns, as `gsockd check` does.
    /// - Returns: `.finished` when every handler is good, `.badUsage` with the problems.
    public func checkHandlers(config: ServerConfig) throws -> ServeOutcome {
        try run(serveFunction: "check") { L in ServeSpec.value(config, ServeOptions()).push(L) }
    }
}
