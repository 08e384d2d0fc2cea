// Compiling a Lua file without running it: what `gsockd check` does to a handler.
// The chunk is loaded into a scratch Lua state that is closed at once, so nothing of
// it runs and nothing is kept. Loading is protected (lua_load catches its own
// errors), so no longjmp can cross this Swift frame.
import CLua

/// Syntax checks of Lua files.
public enum LuaSyntax {
    /// Compiles the Lua file at `path` (text or precompiled, as `gsockd run` would load it).
    /// - Parameter path: the file, named in messages as given.
    /// - Throws: `RuntimeError.compile` with Lua's `file:line: message` when it does not
    ///   compile, or Lua's `cannot open FILE: reason` when it cannot be read.
    public static func check(file path: String) throws {
        guard let L = luaL_newstate() else { throw RuntimeError.setup("cannot create a Lua state") }
        defer { lua_close(L) }
        guard luaL_loadfilex(L, path, nil) != LUA_OK else { return }
        throw RuntimeError.compile(unshortened(luaString(L, -1) ?? "\(path): cannot be loaded", path: path))
    }

    /// `message` with the whole file name where Lua shortened it: Lua keeps the last 56
    /// bytes of a long name (`...gsockd/handlers/echo.lua:3: ...`), too few for most
    /// absolute paths.
    static func unshortened(_ message: String, path: String) -> String {
        guard message.hasPrefix("...") else { return message }
        let rest = message.dropFirst(3)
        let bytes = Array(path.utf8)
        for start in bytes.indices {
            let tail = String(decoding: bytes[start...], as: UTF8.self)
            if rest.hasPrefix(tail + ":") { return path + rest.dropFirst(tail.count) }
        }
        return message
    }
}
