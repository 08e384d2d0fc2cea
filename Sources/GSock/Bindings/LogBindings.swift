// `core.log(level, message [, fields])`: Lua's way into the runtime's logger, so that
// servers log one line per event with level, service, fiber id and peer (SPEC §9).
import CLua
import CShims
import Logging

enum LogBindings {
    static let functions: [(String, LuaBody)] = [("log", log)]

    private static let log: LuaBody = { L in luaCall(L, log) }
    private static func log(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let levelName = luaString(L, 1), let level = Logger.Level(rawValue: levelName) else {
            throw .argument(L, 1, "a log level expected (trace, debug, info, notice, warning, error, critical)")
        }
        let message = try Arg.string(L, 2)
        let rt = Runtime.from(L)
        guard rt.logger.logLevel <= level else { return 0 }
        var metadata: Logger.Metadata = [:]
        if let fiber = rt.current { metadata["fiber"] = "\(fiber.id)" }
        if lua_type(L, 3) == LUA_TTABLE, case .table(let fields) = LuaValue.read(L, 3) {
            for (key, value) in fields {
                switch value {
                case .string(let s): metadata[key] = "\(s)"
                // Values, not text: a JSON log writes them as numbers and booleans.
                case .integer(let i): metadata[key] = .stringConvertible(Int(i))
                case .number(let d): metadata[key] = .stringConvertible(d)
                case .boolean(let b): metadata[key] = .stringConvertible(b)
                default: break
                }
            }
        }
        rt.logger.log(level: level, "\(message)", metadata: metadata)
        return 0
    }
}
