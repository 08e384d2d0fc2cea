// The request object (`req`): one Lua userdata holding a copy of the head, the parser's
// offsets into it and the decoded path. Fields become Lua strings only when the handler
// reads them; `req.headers` is made on first use (lower-case names, repeated fields
// joined with ", ", as OpenResty's ngx.req.get_headers) and kept in the user value.
// The object outlives its request safely: it owns its bytes. Its second user value is
// the connection (http.lua reads the body through it).
import CHTTP
import CLua
import CShims

enum HTTPRequestObject {
    // StaticStrings: a String passed as a C string is copied into a new array per call.
    private static let metatable: StaticString = "gsock.http.request"
    /// Set by http.lua: the case-insensitive lookup of `req.headers`.
    private static let fieldsMetatable: StaticString = "gsock.http.fields"
    private static let tag: UInt64 = 0x6773_6874_7470_7271

    private struct Block {
        var tag: UInt64
        var request: gs_http_request
        var headLength: UInt32
        var pathLength: UInt32
        /// Which request of its connection this is (HTTPConnection.requests): a request
        /// object kept past its request must not read the next one's body.
        var number: UInt32
    }

    private static var headersOffset: Int { MemoryLayout<Block>.stride }

    /// Pushes a request object for the head at `base`; false (nothing pushed) when its
    /// path has a bad percent-escape.
    static func push(_ L: LuaState, base: UnsafePointer<CChar>, headLength: Int, request: gs_http_request,
                     headers: UnsafePointer<gs_http_header>, number: Int, runtime: Runtime) -> Bool {
        let count = Int(request.num_headers)
        let headersSize = count * MemoryLayout<gs_http_header>.stride
        let size = headersOffset + headersSize + headLength + Int(request.path.len)
        let p = lua_newuserdatauv(L, size, 2)!
        let bytes = p + headersOffset + headersSize
        bytes.copyMemory(from: base, byteCount: headLength)
        let path = (bytes + headLength).assumingMemoryBound(to: CChar.self)
        let decoded = gs_http_percent_decode(base + Int(request.path.off), Int(request.path.len), path)
        guard decoded >= 0 else {
            gs_pop(L, 1)
            return false
        }
        p.storeBytes(of: Block(tag: tag, request: request, headLength: UInt32(headLength), pathLength: UInt32(decoded),
                               number: UInt32(truncatingIfNeeded: number)), as: Block.self)
        (p + headersOffset).copyMemory(from: headers, byteCount: headersSize)
        pushMetatable(L, runtime)
        lua_setmetatable(L, -2)
        return true
    }

    /// http.lua's request metatable, by a registry reference once it is there: a lookup by
    /// name hashes the name each request (~110 instructions).
    private static func pushMetatable(_ L: LuaState, _ runtime: Runtime) {
        if runtime.httpRequestMetatableRef != LUA_NOREF {
            luaPushRef(L, runtime.httpRequestMetatableRef)
        } else if gs_getmetatable(L, cString(metatable)) == LUA_TTABLE {
            lua_pushvalue(L, -1)
            runtime.httpRequestMetatableRef = luaRef(L)
        }
    }

    private struct View {
        let block: Block
        let headers: UnsafePointer<gs_http_header>
        let bytes: UnsafePointer<CChar>

        func push(_ L: LuaState, _ span: gs_http_span) {
            lua_pushlstring(L, bytes + Int(span.off), Int(span.len))
        }
    }

    /// Which request of its connection the request object at `index` is.
    static func number(_ L: LuaState, _ index: Int32) throws(LuaError) -> Int {
        Int(try view(L, index).block.number)
    }

    private static func view(_ L: LuaState, _ index: Int32) throws(LuaError) -> View {
        guard lua_type(L, index) == LUA_TUSERDATA, Int(lua_rawlen(L, index)) >= headersOffset,
              let p = lua_touserdata(L, index), p.load(as: UInt64.self) == tag
        else { throw .type(L, index, "http request") }
        let block = p.load(as: Block.self)
        let headers = UnsafeRawPointer(p + headersOffset).assumingMemoryBound(to: gs_http_header.self)
        let bytes = UnsafeRawPointer(p + headersOffset + Int(block.request.num_headers)
                                     * MemoryLayout<gs_http_header>.stride).assumingMemoryBound(to: CChar.self)
        return View(block: block, headers: headers, bytes: bytes)
    }

    /// `field(req, name)`: method, target, path, query, version, headers; nothing else.
    static let field: LuaBody = { L in luaCall(L, field) }
    private static func field(_ L: LuaState) throws(LuaError) -> Int32 {
        let v = try view(L, 1)
        var length = 0
        guard let key = lua_tolstring(L, 2, &length) else { return 0 }
        let r = v.block.request
        switch (length, key[0]) {
        case (6, 0x6d) where strcmp(key, "method") == 0: v.push(L, r.method)
        case (6, 0x74) where strcmp(key, "target") == 0: v.push(L, r.target)
        case (4, 0x70) where strcmp(key, "path") == 0:
            lua_pushlstring(L, v.bytes + Int(v.block.headLength), Int(v.block.pathLength))
        case (5, 0x71) where strcmp(key, "query") == 0:
            if r.has_query == 0 { lua_pushnil(L) } else { v.push(L, r.query) }
        case (7, 0x76) where strcmp(key, "version") == 0:
            lua_pushstring(L, r.minor_version == 0 ? "1.0" : "1.1")
        case (7, 0x68) where strcmp(key, "headers") == 0:
            if lua_getiuservalue(L, 1, 1) == LUA_TTABLE { return 1 }
            gs_pop(L, 1)
            pushHeaders(L, v)
            lua_pushvalue(L, -1)
            lua_setiuservalue(L, 1, 1)
        default: return 0
        }
        return 1
    }

    private static func pushHeaders(_ L: LuaState, _ v: View) {
        let count = Int(v.block.request.num_headers)
        lua_createtable(L, 0, Int32(count))
        let table = lua_gettop(L)
        var name = [CChar](repeating: 0, count: 64)
        for i in 0..<count {
            let h = v.headers[i]
            let n = Int(h.name.len)
            if name.count < n { name = [CChar](repeating: 0, count: n) }
            name.withUnsafeMutableBufferPointer { gs_http_lowercase($0.baseAddress, v.bytes + Int(h.name.off), n) }
            name.withUnsafeBufferPointer { lua_pushlstring(L, $0.baseAddress, n) }
            lua_pushvalue(L, -1)
            if lua_rawget(L, table) == LUA_TSTRING {
                var oldLength = 0
                let old = lua_tolstring(L, -1, &oldLength)!
                var joined = [CChar](repeating: 0, count: oldLength + 2 + Int(h.value.len))
                joined.withUnsafeMutableBufferPointer { out in
                    let p = out.baseAddress!
                    p.update(from: old, count: oldLength)
                    p[oldLength] = 44     // ", "
                    p[oldLength + 1] = 32
                    (p + oldLength + 2).update(from: v.bytes + Int(h.value.off), count: Int(h.value.len))
                }
                gs_pop(L, 1)
                joined.withUnsafeBufferPointer { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
            } else {
                gs_pop(L, 1)
                v.push(L, h.value)
            }
            _ = gs_rawset(L, table)
        }
        _ = gs_getmetatable(L, cString(fieldsMetatable))
        lua_setmetatable(L, table)
    }

    /// `header_values(req, name)`: every value of the field `name` (any case), a list.
    static let headerValues: LuaBody = { L in luaCall(L, headerValues) }
    private static func headerValues(_ L: LuaState) throws(LuaError) -> Int32 {
        let v = try view(L, 1)
        var length = 0
        guard let name = lua_tolstring(L, 2, &length), lua_type(L, 2) == LUA_TSTRING else {
            throw .type(L, 2, "string")
        }
        lua_createtable(L, 1, 0)
        var from = 0
        var n: lua_Integer = 0
        let count = Int(v.block.request.num_headers)
        while true {
            let i = gs_http_find_header(v.bytes, v.headers, count, from, name, length)
            if i < 0 { break }
            v.push(L, v.headers[i].value)
            n += 1
            lua_rawseti(L, -2, n)
            from = i + 1
        }
        return 1
    }
}
