// The error values gsock raises: tables with the metatable "gsock.error" and the
// fields `kind`, `errno` and `message` (SPEC §2, "Errors").
import CLua
import CShims
import Glibc

/// The kinds gsock raises (socket functions return LuaSocket's strings instead).
enum ErrorKind: String {
    case timeout, closed, killed, io, busy
}

enum ErrorValues {
    static let metatable = "gsock.error"
    static let timedOut = "timed out"
    static let cancelled = "File descriptor was closed in another fiber"

    /// Pushes a new error value.
    static func push(_ L: LuaState, _ kind: ErrorKind, _ message: String, errno: Int32? = nil) {
        lua_createtable(L, 0, 3)
        lua_pushstring(L, kind.rawValue)
        luaRawSetField(L, -2, "kind")
        lua_pushstring(L, message)
        luaRawSetField(L, -2, "message")
        if let errno {
            lua_pushinteger(L, lua_Integer(errno))
            luaRawSetField(L, -2, "errno")
        }
        _ = gs_getmetatable(L, metatable)
        lua_setmetatable(L, -2)
    }

    static func pushTimeout(_ L: LuaState) { push(L, .timeout, timedOut) }

    /// The default error of `cancel_wait`: kind "closed", errno EBADF.
    static func pushCancelled(_ L: LuaState) { push(L, .closed, cancelled, errno: EBADF) }

    /// An "io" error carrying `errno` and its strerror text.
    static func pushErrno(_ L: LuaState, _ errno: Int32) {
        push(L, .io, String(cString: strerror(errno)), errno: errno)
    }

    // MARK: - Raising

    /// A new error value, to throw from a binding: `throw ErrorValues.error(L, .busy, "...")`.
    static func error(_ L: LuaState, _ kind: ErrorKind, _ message: String, errno: Int32? = nil) -> LuaError {
        push(L, kind, message, errno: errno)
        return .value
    }

    /// pushCancelled's error, to throw.
    static func cancelledError(_ L: LuaState) -> LuaError {
        pushCancelled(L)
        return .value
    }

    /// pushErrno's error, to throw.
    static func errnoError(_ L: LuaState, _ errno: Int32) -> LuaError {
        pushErrno(L, errno)
        return .value
    }
}
