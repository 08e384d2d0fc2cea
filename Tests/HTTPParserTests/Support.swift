// Helpers for the CHTTP tests: calling the C parser on Swift bytes and reading its
// offsets back as strings, so that each test states a request and what must come of it.
import CHTTP
import XCTest

/// One header as the parser reported it.
struct Field: Equatable, CustomStringConvertible {
    var name: String
    var value: String
    var description: String { "\(name): \(value)" }
}

/// A parsed head, as strings (bytes read as Latin-1, so every byte shows).
struct Head: Equatable {
    var length: Int
    var method: String
    var target: String
    var path: String
    var query: String?
    var authority: String
    var form: Int
    var minor: Int
    var fields: [Field]
}

/// What gs_http_parse_request returned.
enum Parse: Equatable {
    case head(Head)
    case incomplete
    case error(Int)   // the GS_HTTP_* code

    var status: Int { if case .error(let code) = self { return Int(gs_http_status(code)) } else { return 0 } }
    var head: Head? { if case .head(let h) = self { return h } else { return nil } }
}

let defaultLimits = gs_http_limits(max_request_line: 8192, max_header_size: 65536, max_headers: 100, flags: 0)

func limits(line: UInt32 = 8192, headerSize: UInt32 = 65536, headers: UInt32 = 100, strict: Bool = false) -> gs_http_limits {
    gs_http_limits(max_request_line: line, max_header_size: headerSize, max_headers: headers,
                   flags: strict ? UInt32(GS_HTTP_STRICT_CRLF) : 0)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func latin1(_ b: ArraySlice<UInt8>) -> String { String(b.map { Character(Unicode.Scalar($0)) }) }

func text(_ b: [UInt8], _ s: gs_http_span) -> String { latin1(b[Int(s.off) ..< Int(s.off + s.len)]) }

/// Runs `body` with a pointer to the bytes (never nil, even for none).
func withBytes<R>(_ b: [UInt8], _ body: (UnsafePointer<CChar>, Int) -> R) -> R {
    if b.isEmpty {
        var one: CChar = 0
        return body(&one, 0)
    }
    return b.withUnsafeBufferPointer { p in
        p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { body($0, b.count) }
    }
}

/// Parses the head at the start of `b` (its first `count` bytes when given).
func parse(_ b: [UInt8], count: Int? = nil, lastLen: Int = 0, limits: gs_http_limits = defaultLimits) -> Parse {
    let n = count ?? b.count
    var lim = limits
    var req = gs_http_request()
    var headers = [gs_http_header](repeating: gs_http_header(), count: max(Int(limits.max_headers), 1))
    let r = withBytes(b) { p, _ in gs_http_parse_request(p, n, lastLen, &lim, &req, &headers) }
    if r == GS_HTTP_INCOMPLETE { return .incomplete }
    if r < 0 { return .error(r) }
    let fields = (0 ..< Int(req.num_headers)).map { Field(name: text(b, headers[$0].name), value: text(b, headers[$0].value)) }
    return .head(Head(length: r, method: text(b, req.method), target: text(b, req.target), path: text(b, req.path),
                      query: req.has_query != 0 ? text(b, req.query) : nil, authority: text(b, req.authority),
                      form: Int(req.form), minor: Int(req.minor_version), fields: fields))
}

func parse(_ s: String, limits: gs_http_limits = defaultLimits) -> Parse { parse(bytes(s), limits: limits) }

/// The body framing of the request `s` (whose head must parse), with its length.
func framing(_ s: String) -> (Int, UInt64) {
    let b = bytes(s)
    var lim = defaultLimits
    var req = gs_http_request()
    var headers = [gs_http_header](repeating: gs_http_header(), count: 100)
    var length: UInt64 = 0
    let kind: Int32 = withBytes(b) { p, n in
        let r = gs_http_parse_request(p, n, 0, &lim, &req, &headers)
        precondition(r > 0, "the head of \(s.debugDescription) did not parse: \(r)")
        return gs_http_body_framing(p, &req, &headers, &length)
    }
    return (Int(kind), length)
}

/// Decodes a chunked body given in pieces, as a server would: the result of the call that
/// ended it (or of the last call), the decoded bytes, and every byte after the body (the
/// rest of the piece it ended in and all later pieces).
func decodeChunked(_ pieces: [[UInt8]], maxBody: UInt64 = .max) -> (result: Int, body: [UInt8], after: [UInt8]) {
    var d = gs_http_chunked()
    gs_http_chunked_init(&d, maxBody)
    var body: [UInt8] = [], after: [UInt8] = []
    var result = GS_HTTP_INCOMPLETE
    var ended = false
    for piece in pieces {
        if ended {
            after += piece
            continue
        }
        var buf = piece
        var size = buf.count
        result = buf.withUnsafeMutableBufferPointer { p -> Int in
            var one: CChar = 0
            guard let base = p.baseAddress else { return gs_http_decode_chunked(&d, &one, &size) }
            return base.withMemoryRebound(to: CChar.self, capacity: p.count) { gs_http_decode_chunked(&d, $0, &size) }
        }
        body += buf[0 ..< size]
        if result >= 0 {
            after = Array(buf[size ..< size + result])
            ended = true
        } else if result != GS_HTTP_INCOMPLETE {
            break
        }
    }
    return (result, body, after)
}

func percentDecode(_ s: String) -> String? {
    let b = bytes(s)
    var out = [UInt8](repeating: 0, count: max(b.count, 1))
    let r = withBytes(b) { p, n in out.withUnsafeMutableBufferPointer { o in
        o.baseAddress!.withMemoryRebound(to: CChar.self, capacity: o.count) { gs_http_percent_decode(p, n, $0) }
    } }
    return r < 0 ? nil : latin1(out[0 ..< r])
}
