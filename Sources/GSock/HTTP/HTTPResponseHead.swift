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

    /// Appends the fields of the table at `headers` (none when it is not a table) to
    /// `out`; throws a Lua error naming a bad field. `fields` is scratch space.
    static func appendFields(_ L: LuaState, headers: Int32, fields: inout gs_http_fields,
                             to out: inout OutputBuffer) throws(LuaError) -> Seen {
        var seen = Seen()
        if lua_type(L, headers) == LUA_TTABLE {
            // The message names the field; a position would be the runner's (the handler
            // may have returned already), so it is raised as it is.
            guard gs_http_append_fields(L, headers, &fields) == LUA_OK else { throw .value }
            seen.contentLength = fields.content_length >= 0 ? Int(fields.content_length) : nil
            seen.transferEncoding = fields.transfer_encoding != 0
            seen.date = fields.date != 0
            seen.connectionClose = fields.connection_close != 0
            if let data = fields.data { out.append(data, count: fields.len) }
        }
        return seen
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
        withDigits(of: n, radix: 10) { append(contentsOf: UnsafeRawBufferPointer(start: $0, count: $1)) }
    }
}

/// Calls `body` with the digits of `n` (>= 0) in `radix` (10, or 16 in lower case) and
/// their count, from a buffer on the stack.
@inline(__always)
func withDigits(of n: Int, radix: Int, _ body: (UnsafeRawPointer, Int) -> Void) {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
        var v = n
        var i = 20
        repeat {
            i -= 1
            let d = UInt8(truncatingIfNeeded: v % radix)
            digits[i] = d < 10 ? 48 + d : 87 + d
            v /= radix
        } while v > 0
        body(digits.baseAddress! + i, 20 - i)
    }
}
