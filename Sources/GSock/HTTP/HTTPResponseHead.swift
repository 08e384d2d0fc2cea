// Response heads: the status line, the handler's `res.headers`, and what the server adds
// (`Date`, `Content-Length` or chunked framing, `Connection`). A field value holding CR,
// LF or NUL is refused (response splitting), as is a name that is not a token.
import CHTTP
import CLua
import CShims

enum HTTPResponseHead {
    static func reason(_ status: Int) -> StaticString {
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
        var out: [UInt8] = []
        out.reserveCapacity(160)
        appendStatusLine(status, to: &out)
        out += date
        out.append(static: "Content-Type: text/plain\r\nContent-Length: ")
        out.append(decimal: reason(status).utf8CodeUnitCount + 1)
        out.append(static: "\r\nConnection: close\r\n\r\n")
        out.append(static: reason(status))
        out.append(10)
        return out
    }

    /// "HTTP/1.1 200 OK\r\n"
    static func appendStatusLine(_ status: Int, to out: inout [UInt8]) {
        out.append(static: "HTTP/1.1 ")
        out.append(decimal: status)
        out.append(32)
        out.append(static: reason(status))
        out.append(static: "\r\n")
    }

    /// What the server adds, decided from the handler's fields.
    struct Seen {
        var contentLength: Int?
        var transferEncoding = false
        var date = false
        var connectionClose = false
    }

    /// Appends the status line and the fields of the table at `headers` (or none when it
    /// is nil) to `out`; throws a Lua error naming a bad field (`out` may then hold part
    /// of the head: the caller drops it).
    static func appendHead(_ L: LuaState, status: Int, headers: Int32, to out: inout [UInt8]) throws(LuaError) -> Seen {
        appendStatusLine(status, to: &out)
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
            let kind = Int(gs_http_response_field(name, nameLength))
            guard kind != GS_HTTP_FIELD_INVALID else {
                throw .raise(L, "res.headers: '\(String(cString: name))' is not a valid field name")
            }
            let nameBytes = UnsafeRawBufferPointer(start: name, count: nameLength)
            if lua_type(L, -1) == LUA_TTABLE {
                var i: lua_Integer = 1
                while lua_rawgeti(L, -1, i) != LUA_TNIL {
                    try appendField(L, name: nameBytes, kind: kind, value: -1, to: &out, seen: &seen)
                    gs_pop(L, 1)
                    i += 1
                }
                gs_pop(L, 1)
            } else {
                try appendField(L, name: nameBytes, kind: kind, value: -1, to: &out, seen: &seen)
            }
            gs_pop(L, 1)
        }
        return seen
    }

    private static func appendField(_ L: LuaState, name: UnsafeRawBufferPointer, kind: Int, value: Int32,
                                    to out: inout [UInt8], seen: inout Seen) throws(LuaError) {
        let type = lua_type(L, value)
        guard type == LUA_TSTRING || type == LUA_TNUMBER else {
            throw .raise(L, "res.headers['\(String(decoding: name, as: UTF8.self))']: a string expected, "
                + "got \(String(cString: lua_typename(L, lua_type(L, value))))")
        }
        var length = 0
        let v = lua_tolstring(L, value, &length)!   // a number becomes a string on the stack: fine here
        guard gs_http_value_safe(v, length) != 0 else {
            throw .raise(L, "res.headers['\(String(decoding: name, as: UTF8.self))']: the value holds CR, LF or NUL")
        }
        switch kind {
        case GS_HTTP_FIELD_CONTENT_LENGTH:
            var n: UInt64 = 0
            guard gs_http_parse_content_length(v, length, &n) == 0, n <= UInt64(Int.max) else {
                throw .raise(L, "res.headers['\(String(decoding: name, as: UTF8.self))']: a length expected, "
                    + "got '\(String(cString: v))'")
            }
            seen.contentLength = Int(n)
        case GS_HTTP_FIELD_TRANSFER_ENCODING: seen.transferEncoding = true
        case GS_HTTP_FIELD_DATE: seen.date = true
        case GS_HTTP_FIELD_CONNECTION: if gs_http_list_has(v, length, "close", 5) != 0 { seen.connectionClose = true }
        default: break
        }
        out += name
        out.append(static: ": ")
        out += UnsafeRawBufferPointer(start: v, count: length)
        out.append(static: "\r\n")
    }
}

extension Array where Element == UInt8 {
    /// Appends a literal's bytes.
    @inline(__always)
    mutating func append(static text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends `n` (>= 0) in decimal.
    mutating func append(decimal n: Int) {
        var digits = 1
        var rest = n
        while rest >= 10 { rest /= 10; digits += 1 }
        let end = count + digits
        append(contentsOf: repeatElement(UInt8(48), count: digits))
        withUnsafeMutableBufferPointer { bytes in
            var v = n
            var i = end - 1
            repeat {
                bytes[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
                v /= 10
                i -= 1
            } while v > 0
        }
    }
}
