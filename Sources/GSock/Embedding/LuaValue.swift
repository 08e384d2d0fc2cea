// Values passed between Swift functions registered with `Runtime.register(module:)`
// and Lua.
import CLua
import CShims
import Glibc

/// A Lua value as Swift sees it.
public enum LuaValue: Equatable, Sendable {
    case `nil`
    case boolean(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    /// A sequence `{v1, v2, ...}`.
    case array([LuaValue])
    /// A table with string keys.
    case table([String: LuaValue])

    /// Reads the value at `index` (tables: a sequence if they have element 1, else their string keys).
    static func read(_ L: LuaState, _ index: Int32, depth: Int = 0) -> LuaValue {
        switch lua_type(L, index) {
        case LUA_TBOOLEAN: return .boolean(lua_toboolean(L, index) != 0)
        case LUA_TNUMBER:
            if lua_isinteger(L, index) != 0 { return .integer(Int(lua_tointegerx(L, index, nil))) }
            return .number(lua_tonumberx(L, index, nil))
        case LUA_TSTRING: return .string(luaString(L, index) ?? "")
        case LUA_TTABLE where depth < 32:
            let t = lua_absindex(L, index)
            lua_checkstack(L, 4)
            if lua_rawgeti(L, t, 1) != LUA_TNIL {
                gs_pop(L, 1)
                var items: [LuaValue] = []
                var i: lua_Integer = 1
                while lua_rawgeti(L, t, i) != LUA_TNIL {
                    items.append(read(L, -1, depth: depth + 1))
                    gs_pop(L, 1)
                    i += 1
                }
                gs_pop(L, 1)
                return .array(items)
            }
            gs_pop(L, 1)
            var fields: [String: LuaValue] = [:]
            lua_pushnil(L)
            while gs_next(L, t) != 0 {
                if lua_type(L, -2) == LUA_TSTRING, let key = luaString(L, -2) {
                    fields[key] = read(L, -1, depth: depth + 1)
                }
                gs_pop(L, 1)
            }
            return .table(fields)
        default: return .nil
        }
    }

    /// Pushes the value.
    func push(_ L: LuaState) {
        lua_checkstack(L, 3)
        switch self {
        case .nil: lua_pushnil(L)
        case .boolean(let b): lua_pushboolean(L, b ? 1 : 0)
        case .integer(let i): lua_pushinteger(L, lua_Integer(i))
        case .number(let d): lua_pushnumber(L, d)
        case .string(let s): lua_pushstring(L, s)
        case .array(let items):
            lua_createtable(L, Int32(items.count), 0)
            for (i, v) in items.enumerated() {
                v.push(L)
                lua_rawseti(L, -2, lua_Integer(i + 1))
            }
        case .table(let fields):
            lua_createtable(L, 0, Int32(fields.count))
            for (k, v) in fields {
                v.push(L)
                luaRawSetField(L, -2, k)
            }
        }
    }
}

extension LuaValue: CustomStringConvertible {
    /// The value as Lua's `tostring` writes it (`ada`, `42`, `0.5`, `true`, `nil`), and
    /// tables as constructors (`{1, 2}`, `{name = "ada"}`) with their strings quoted.
    public var description: String { text(quoted: false) }

    private func text(quoted: Bool) -> String {
        switch self {
        case .nil: return "nil"
        case .boolean(let b): return b ? "true" : "false"
        case .integer(let i): return String(i)
        case .number(let d): return LuaValue.luaNumberText(d)
        case .string(let s): return quoted ? "\"" + s.replacingAll("\"", "\\\"") + "\"" : s
        case .array(let items): return "{" + items.map { $0.text(quoted: true) }.joined(separator: ", ") + "}"
        case .table(let fields):
            return "{" + fields.keys.sorted().map { "\($0) = \(fields[$0]!.text(quoted: true))" }.joined(separator: ", ") + "}"
        }
    }

    /// A float as Lua 5.4 prints it: "%.14g", with ".0" when that looks like an integer.
    static func luaNumberText(_ d: Double) -> String {
        if d.isNaN { return d.sign == .minus ? "-nan" : "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([d]) { vsnprintf(&buffer, buffer.count, "%.14g", $0) }
        let text = String(cString: buffer)
        return text.contains(where: { $0 == "." || $0 == "e" || $0 == "n" || $0 == "i" }) ? text : text + ".0"
    }
}

