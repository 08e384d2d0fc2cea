// Response heads: the status line, the handler's `res.headers`, and what the server adds
// (`Date`, `Content-Length` or chunked framing, `Connection`). A field value holding CR,
// LF or NUL is refused (response splitting), as is a name that is not a token.
import CHTTP
import CLua
import CShims

enum HTTPResponseHead {
    static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return ""
        }
    }

    /// Statuses whose responses never have a body.
    static func hasNoBody(_ status: Int) -> Bool { status < 200 || status == 204 || status == 304 }

    /// A complete response the server answers by itself, ending the connection.
    static func errorResponse(_ status: Int, date: [UInt8]) -> [UInt8] {
        let text = "\(reason(status))\n"
        var out = Array("HTTP/1.1 \(status) \(reason(status))\r\n".utf8)
        out += date
        out += Array("Content-Type: text/plain\r\nContent-Length: \(text.utf8.count)\r\nConnection: close\r\n\r\n\(text)".utf8)
        return out
    }

    /// What the server adds, decided from the handler's fields.
    struct Seen {
        var contentLength: Int?
        var transferEncoding = false
        var date = false
        var connectionClose = false
    }

    /// Appends the status line and the fields of the table at `headers` (or none when it
    /// is nil) to `out`; throws a Lua error naming a bad field.
    static func appendHead(_ L: LuaState, status: Int, headers: Int32, to out: inout [UInt8]) throws(LuaError) -> Seen {
        out += Array("HTTP/1.1 \(status) \(reason(status))\r\n".utf8)
        var seen = Seen()
        guard lua_type(L, headers) == LUA_TTABLE else { return seen }
        lua_pushnil(L)
        while gs_next(L, headers) != 0 {
            // [key, value]
            guard lua_type(L, -2) == LUA_TSTRING else {
                throw .raise(L, "res.headers: field names must be strings, got \(String(cString: lua_typename(L, lua_type(L, -2))))")
            }
            var nameLength = 0
            let name = lua_tolstring(L, -2, &nameLength)!
            let nameBytes = UnsafeRawBufferPointer(start: name, count: nameLength)
            guard nameLength > 0, nameBytes.allSatisfy(isTokenByte) else {
                throw .raise(L, "res.headers: '\(String(cString: name))' is not a valid field name")
            }
            if lua_type(L, -1) == LUA_TTABLE {
                var i: lua_Integer = 1
                while lua_rawgeti(L, -1, i) != LUA_TNIL {
                    try appendField(L, name: nameBytes, value: -1, to: &out, seen: &seen)
                    gs_pop(L, 1)
                    i += 1
                }
                gs_pop(L, 1)
            } else {
                try appendField(L, name: nameBytes, value: -1, to: &out, seen: &seen)
            }
            gs_pop(L, 1)
        }
        return seen
    }

    private static func appendField(_ L: LuaState, name: UnsafeRawBufferPointer, value: Int32, to out: inout [UInt8],
                                    seen: inout Seen) throws(LuaError) {
        let fieldName = String(decoding: name, as: UTF8.self)
        let type = lua_type(L, value)
        guard type == LUA_TSTRING || type == LUA_TNUMBER else {
            throw .raise(L, "res.headers['\(fieldName)']: a string expected, got \(String(cString: lua_typename(L, lua_type(L, value))))")
        }
        var length = 0
        let v = lua_tolstring(L, value, &length)!   // a number becomes a string on the stack: fine here
        let bytes = UnsafeRawBufferPointer(start: v, count: length)
        guard !bytes.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
            throw .raise(L, "res.headers['\(fieldName)']: the value holds CR, LF or NUL")
        }
        func named(_ n: String) -> Bool {
            n.withCString { gs_http_name_equal(name.baseAddress!.assumingMemoryBound(to: CChar.self), name.count, $0, n.utf8.count) != 0 }
        }
        if named("content-length") {
            guard let n = Int(String(decoding: bytes, as: UTF8.self)), n >= 0 else {
                throw .raise(L, "res.headers['\(fieldName)']: a length expected, got '\(String(decoding: bytes, as: UTF8.self))'")
            }
            seen.contentLength = n
        } else if named("transfer-encoding") {
            seen.transferEncoding = true
        } else if named("date") {
            seen.date = true
        } else if named("connection") {
            if gs_http_list_has(v, length, "close", 5) != 0 { seen.connectionClose = true }
        }
        out += name
        out += [58, 32]
        out += bytes
        out += [13, 10]
    }

    private static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2a, 0x2b, 0x2d, 0x2e, 0x5e, 0x5f, 0x60, 0x7c, 0x7e: return true
        default: return false
        }
    }
}
