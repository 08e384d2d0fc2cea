// The boundary between Swift and Lua.
//
// Every Lua-callable Swift function is a `LuaBody`: it reads its arguments, pushes
// its results and *returns a status* (see CShims). It never calls anything that
// raises or yields (`lua_error`, `luaL_check*`, metamethod-invoking accessors); the
// helpers here build the statuses in the shape Lua's own libraries use, so users
// see `bad argument #2 to 'wait_read' (number expected, got string)`.
import CLua
import CShims

public typealias LuaState = OpaquePointer
typealias LuaBody = @convention(c) (LuaState?) -> Int32

enum LuaStatus {
    static let raise = Int32(GS_RAISE)
    static let raiseWhere = Int32(GS_RAISE_WHERE)
    static let argError = Int32(GS_ARGERROR)
    static let yield = Int32(GS_YIELD)
}

extension OpaquePointer {
    /// The per-state data shared by every thread of this Lua state.
    @inline(__always) var gsState: UnsafeMutablePointer<gs_state> { gs_getstate(self) }
}

// MARK: - Statuses

/// Raises the string `message` prefixed with the caller's position, as `error(message)` does.
func luaRaise(_ L: LuaState, _ message: String) -> Int32 {
    lua_pushstring(L, message)
    return LuaStatus.raiseWhere
}

/// `bad argument #arg to 'fn' (message)`.
func luaArgError(_ L: LuaState, _ arg: Int32, _ message: String) -> Int32 {
    lua_pushstring(L, message)
    L.gsState.pointee.arg = arg
    return LuaStatus.argError
}

/// `bad argument #arg to 'fn' (expected expected, got type)`, as luaL_typeerror words it.
func luaTypeError(_ L: LuaState, _ arg: Int32, _ expected: String) -> Int32 {
    let actual: String
    if luaL_getmetafield(L, arg, "__name") == LUA_TSTRING {
        actual = luaString(L, -1) ?? "userdata"
        gs_pop(L, 1)
    } else if lua_type(L, arg) == LUA_TLIGHTUSERDATA {
        actual = "light userdata"
    } else {
        actual = String(cString: gs_typename_at(L, arg))
    }
    return luaArgError(L, arg, "\(expected) expected, got \(actual)")
}

// MARK: - Reading arguments (none of these raise)

@inline(__always) func luaIsNoneOrNil(_ L: LuaState, _ i: Int32) -> Bool { lua_type(L, i) <= LUA_TNIL }

func luaString(_ L: LuaState, _ i: Int32) -> String? {
    guard lua_type(L, i) == LUA_TSTRING else { return nil }
    var len = 0
    guard let p = lua_tolstring(L, i, &len) else { return nil }
    return p.withMemoryRebound(to: UInt8.self, capacity: len) {
        String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self)
    }
}

/// How a timeout reader treats a negative number (and -inf).
enum NegativeTimeout {
    /// SPEC §3 (wait_*, sleep, join, ...): an argument error.
    case isError
    /// LuaSocket (settimeout, settimeouts, select): block for ever.
    case meansForever
}

// MARK: - Reading arguments with `try`

/// A Lua error a binding raises: its message is pushed and `status` tells the trampoline
/// how to raise it. Thrown Swift errors are ordinary returns, so a binding that throws one
/// still never raises from a Swift frame; `luaCall` turns it back into the status.
struct LuaError: Error {
    let status: Int32
    init(status: Int32) { self.status = status }

    /// `bad argument #arg to 'fn' (message)`.
    static func argument(_ L: LuaState, _ arg: Int32, _ message: String) -> LuaError {
        LuaError(status: luaArgError(L, arg, message))
    }
    /// `bad argument #arg to 'fn' (expected expected, got type)`.
    static func type(_ L: LuaState, _ arg: Int32, _ expected: String) -> LuaError {
        LuaError(status: luaTypeError(L, arg, expected))
    }
    /// `message` prefixed with the caller's position, as `error(message)` raises it.
    static func raise(_ L: LuaState, _ message: String) -> LuaError {
        LuaError(status: luaRaise(L, message))
    }
    /// The value on top of the stack, raised as it is (an error value, a kill's error).
    static let value = LuaError(status: LuaStatus.raise)
}

/// Runs a binding written with `try`: the one place a thrown `LuaError` becomes the status
/// the trampoline raises.
@inline(__always)
func luaCall(_ L: LuaState?, _ body: (LuaState) throws(LuaError) -> Int32) -> Int32 {
    do { return try body(L!) } catch { return error.status }
}

/// The typed readers of Lua arguments; each throws the error lauxlib's `luaL_check*` would
/// raise, with the same words.
enum Arg {
    static func integer(_ L: LuaState, _ i: Int32) throws(LuaError) -> Int {
        var isNum: Int32 = 0
        let v = lua_tointegerx(L, i, &isNum)
        guard isNum != 0, lua_type(L, i) == LUA_TNUMBER else {
            if lua_type(L, i) == LUA_TNUMBER { throw .argument(L, i, "number has no integer representation") }
            throw .type(L, i, "number")
        }
        return Int(v)
    }

    /// An integer argument that must lie in `range` (a descriptor, a size): lauxlib's words
    /// when it is not an integer, "value out of range" when it is one that does not fit. Every
    /// Lua number that becomes an Int32 or feeds arithmetic goes through here or clamps, never
    /// a trapping Int32(_:).
    static func integer(_ L: LuaState, _ i: Int32, in range: ClosedRange<Int>) throws(LuaError) -> Int {
        let v = try integer(L, i)
        guard range.contains(v) else { throw .argument(L, i, "value out of range") }
        return v
    }

    /// An optional integer: nil when absent.
    static func optionalInteger(_ L: LuaState, _ i: Int32) throws(LuaError) -> Int? {
        luaIsNoneOrNil(L, i) ? nil : try integer(L, i)
    }

    /// An optional integer clamped into `range` (nil when absent): for sizes where any larger
    /// value means "no limit" (a float that is not an integer is still an argument error).
    static func clampedInteger(_ L: LuaState, _ i: Int32, _ range: ClosedRange<Int>) throws(LuaError) -> Int? {
        guard let v = try optionalInteger(L, i) else { return nil }
        return min(max(v, range.lowerBound), range.upperBound)
    }

    /// An optional number: nil when absent.
    static func optionalNumber(_ L: LuaState, _ i: Int32) throws(LuaError) -> Double? {
        if luaIsNoneOrNil(L, i) { return nil }
        var isNum: Int32 = 0
        let v = lua_tonumberx(L, i, &isNum)
        guard isNum != 0, lua_type(L, i) == LUA_TNUMBER else { throw .type(L, i, "number") }
        return v
    }

    /// The one reader of timeout arguments, so that every timeout follows the same rule: nil
    /// or +inf wait for ever, NaN is an argument error (a NaN timer never fires and a NaN
    /// deadline never passes), a negative number is as `negative` says. Huge finite values
    /// are kept: libev takes doubles, and ev_now() + 1e308 is still finite.
    static func timeout(_ L: LuaState, _ i: Int32, negative: NegativeTimeout = .isError) throws(LuaError) -> Double? {
        guard let t = try optionalNumber(L, i) else { return nil }
        if t.isNaN { throw .argument(L, i, "timeout is NaN") }
        if t < 0 {
            if negative == .meansForever { return nil }
            throw .argument(L, i, "timeout must be a non-negative number or nil")
        }
        return t.isInfinite ? nil : t
    }

    /// A string argument (a number is not converted): "string expected, got T" otherwise.
    static func string(_ L: LuaState, _ i: Int32) throws(LuaError) -> String {
        guard let s = luaString(L, i) else { throw .type(L, i, "string") }
        return s
    }

    /// An optional string: nil when absent.
    static func optionalString(_ L: LuaState, _ i: Int32) throws(LuaError) -> String? {
        luaIsNoneOrNil(L, i) ? nil : try string(L, i)
    }

    /// A table argument: "table expected, got T" otherwise.
    static func table(_ L: LuaState, _ i: Int32) throws(LuaError) {
        guard lua_type(L, i) == LUA_TTABLE else { throw .type(L, i, "table") }
    }
}

// MARK: - Registry references

/// Anchors the value on top of the stack (popping it) and returns its reference.
/// A StaticString as a C string, without the copy Swift makes of a String passed as one.
@inline(__always) func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

@inline(__always) func luaRef(_ L: LuaState) -> Int32 { luaL_ref(L, gs_registryindex()) }
@inline(__always) func luaUnref(_ L: LuaState, _ ref: Int32) {
    if ref != LUA_NOREF && ref != LUA_REFNIL { luaL_unref(L, gs_registryindex(), ref) }
}
@inline(__always) func luaPushRef(_ L: LuaState, _ ref: Int32) { lua_rawgeti(L, gs_registryindex(), lua_Integer(ref)) }

// MARK: - Registering functions

/// Sets `table[name] = body` for each pair; the table is on top of the stack.
/// `fdArg` names the functions whose first argument may be an object with getfd(), and
/// `readArg` those of them that return at once when that object's dirty() is true.
func luaSetFunctions(_ L: LuaState, _ functions: [(String, LuaBody)], fdArg: Set<String> = [],
                     readArg: Set<String> = []) {
    for (name, body) in functions {
        gs_pushbody(L, body, 0, readArg.contains(name) ? 2 : fdArg.contains(name) ? 1 : 0)
        luaRawSetField(L, -2, name)
    }
}

/// Sets `table[name] = value` without metamethods; the table is at `index`, the value on top.
func luaRawSetField(_ L: LuaState, _ index: Int32, _ name: String) {
    let t = lua_absindex(L, index)
    lua_pushstring(L, name)
    lua_rotate(L, -2, 1)
    _ = gs_rawset(L, t)  // a string key: always set
}

/// Pushes `table[name]` without metamethods.
@discardableResult
/// luaRawGetField for hot paths: a String name is copied into a new C string per call.
@inline(__always) func luaRawGetField(_ L: LuaState, _ index: Int32, static name: StaticString) -> Int32 {
    let t = lua_absindex(L, index)
    lua_pushstring(L, cString(name))
    return lua_rawget(L, t)
}

func luaRawGetField(_ L: LuaState, _ index: Int32, _ name: String) -> Int32 {
    let t = lua_absindex(L, index)
    lua_pushstring(L, name)
    return lua_rawget(L, t)
}
