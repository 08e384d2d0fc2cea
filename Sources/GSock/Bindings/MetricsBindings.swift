// The admin listener's view of the runtime (SPEC §9): the figures gsock/metrics.lua writes
// as /metrics, whether the loop is healthy (/healthz), the fiber dump as text or JSON
// (/debug/fibers), and, for server.lua, attaching a service's counters to its listeners.
import CLua
import CShims

enum MetricsBindings {
    /// In `core`, for gsock/metrics.lua and serve.lua's admin handler.
    static let functions: [(String, LuaBody)] = [
        ("metrics_figures", figures), ("start_collecting", startCollecting), ("loop_healthy", loopHealthy),
        ("fiber_dump", fiberDump),
    ]
    /// In server.lua's host table.
    static let hostFunctions: [(String, LuaBody)] = [
        ("attach_metrics", attach), ("count_handler_error", countHandlerError),
    ]

    /// `metrics_figures()` → { services = {...}, fibers, memory, runaways, loop_lag }.
    private static let figures: LuaBody = { L in luaCall(L, figures) }
    private static func figures(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        let services = rt.metrics.services.keys.sorted().compactMap { rt.metrics.services[$0]?.luaValue }
        var fields: [String: LuaValue] = [
            "services": .array(services), "fibers": .integer(rt.liveFibers), "memory": .integer(rt.memoryInUse),
            "runaways": .integer(Int(rt.state.pointee.runaways)),
        ]
        if rt.metrics.lagTimer != nil { fields["loop_lag"] = rt.metrics.loopLag.luaValue }
        LuaValue.table(fields).push(L)
        return 1
    }

    private static let startCollecting: LuaBody = { L in
        Runtime.from(L!).startCollecting()
        return 0
    }

    /// `loop_healthy(grace)` → false when a fiber blocked the loop past max_run_time
    /// within the last `grace` seconds.
    private static let loopHealthy: LuaBody = { L in luaCall(L, loopHealthy) }
    private static func loopHealthy(_ L: LuaState) throws(LuaError) -> Int32 {
        let grace = try Arg.optionalNumber(L, 1) ?? 1
        lua_pushboolean(L, Runtime.from(L).loopIsHealthy(grace: grace) ? 1 : 0)
        return 1
    }

    /// `fiber_dump([json])` → the SIGUSR1 dump as text, or as a JSON document.
    private static let fiberDump: LuaBody = { L in luaCall(L, fiberDump) }
    private static func fiberDump(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        lua_pushstring(L, lua_toboolean(L, 1) != 0 ? rt.dumpJSON() : rt.dumpText())
        return 1
    }

    /// `attach_metrics(listener, service [, tls [, http]])`: connections the listener
    /// accepts count in the service's figures (once the runtime collects: startCollecting).
    private static let attach: LuaBody = { L in luaCall(L, attach) }
    private static func attach(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let s = SocketBindings.get(L, 1) else { throw .type(L, 1, "socket") }
        let rt = Runtime.from(L)
        let name = try Arg.string(L, 2)
        guard rt.metrics.collecting else { return 0 }
        let m = rt.metrics.service(name)
        if lua_toboolean(L, 3) != 0 { m.tls = true }
        if lua_toboolean(L, 4) != 0 { m.http = true }
        s.metrics = m
        return 0
    }

    private static let countHandlerError: LuaBody = { L in luaCall(L, countHandlerError) }
    private static func countHandlerError(_ L: LuaState) throws(LuaError) -> Int32 {
        let rt = Runtime.from(L)
        let name = try Arg.string(L, 1)
        if rt.metrics.collecting { rt.metrics.service(name).handlerErrors += 1 }
        return 0
    }
}
