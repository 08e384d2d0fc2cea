// SPEC §11's head limits: max_request_line (414), max_header_size and max_headers (431),
// each exact at its edge, reported as soon as it is passed (before the head is complete:
// a client sending an endless line gets its answer then), and through the last_len path
// too. And the status each result maps to.
import CHTTP
import XCTest

final class LimitTests: XCTestCase {
    func testRequestLineLimitIsExact() {
        let line = "GET /" + String(repeating: "a", count: 95) + " HTTP/1.1"   // 109 bytes
        XCTAssertEqual(line.utf8.count, 109)
        let request = line + "\r\nHost: a\r\n\r\n"
        XCTAssertNotNil(parse(request, limits: limits(line: 109)).head)
        XCTAssertEqual(parse(request, limits: limits(line: 108)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        XCTAssertEqual(parse(request, limits: limits(line: 108)).status, 414)
        // with a bare LF as well
        XCTAssertNotNil(parse(line + "\nHost: a\n\n", limits: limits(line: 109)).head)
        XCTAssertEqual(parse(line + "\nHost: a\n\n", limits: limits(line: 108)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        // leading empty lines count
        XCTAssertEqual(parse("\r\n" + request, limits: limits(line: 110)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        XCTAssertNotNil(parse("\r\n" + request, limits: limits(line: 111)).head)
    }

    func testRequestLineLimitIsReportedBeforeTheLineEnds() {
        let endless = bytes("GET /" + String(repeating: "a", count: 200))
        XCTAssertEqual(parse(endless, limits: limits(line: 100)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        XCTAssertEqual(parse(endless, count: 102, limits: limits(line: 100)), .incomplete)  // 100 and a line end could follow
        XCTAssertEqual(parse(endless, count: 103, limits: limits(line: 100)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        // and when the bytes came in several reads (the last_len path)
        XCTAssertEqual(parse(endless, count: 150, lastLen: 90, limits: limits(line: 100)), .error(Int(GS_HTTP_URI_TOO_LONG)))
        XCTAssertEqual(parse(endless, count: 101, lastLen: 90, limits: limits(line: 100)), .incomplete)
    }

    func testHeaderSectionLimitIsExact() {
        let fields = "Host: a\r\nX-Long: " + String(repeating: "b", count: 100) + "\r\n\r\n"   // the header section
        let size = UInt32(fields.utf8.count)
        let request = "GET / HTTP/1.1\r\n" + fields
        XCTAssertNotNil(parse(request, limits: limits(headerSize: size)).head)
        XCTAssertEqual(parse(request, limits: limits(headerSize: size - 1)), .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
        XCTAssertEqual(parse(request, limits: limits(headerSize: size - 1)).status, 431)
    }

    func testHeaderSectionLimitIsReportedBeforeTheHeadEnds() {
        let endless = bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "b", count: 500))
        XCTAssertEqual(parse(endless, limits: limits(headerSize: 100)), .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
        XCTAssertEqual(parse(endless, count: 16 + 100, limits: limits(headerSize: 100)), .incomplete)
        XCTAssertEqual(parse(endless, count: 16 + 101, limits: limits(headerSize: 100)), .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
        XCTAssertEqual(parse(endless, count: 300, lastLen: 200, limits: limits(headerSize: 100)), .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
        // many small lines, never an empty one
        let lines = bytes("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 100))
        XCTAssertEqual(parse(lines, lastLen: lines.count - 10, limits: limits(headerSize: 300, headers: 1000)),
                       .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
    }

    func testFieldCountLimitIsExact() {
        let ten = "GET / HTTP/1.1\r\n" + (0 ..< 10).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        XCTAssertEqual(parse(ten, limits: limits(headers: 10)).head?.fields.count, 10)
        XCTAssertEqual(parse(ten, limits: limits(headers: 9)), .error(Int(GS_HTTP_TOO_MANY_HEADERS)))
        XCTAssertEqual(parse(ten, limits: limits(headers: 9)).status, 431)
        XCTAssertEqual(parse("GET / HTTP/1.1\r\n\r\n", limits: limits(headers: 0)).head?.fields, [])
        XCTAssertEqual(parse("GET / HTTP/1.1\r\nX: y\r\n\r\n", limits: limits(headers: 0)), .error(Int(GS_HTTP_TOO_MANY_HEADERS)))
    }

    func testDefaultsAreSpecs() {
        XCTAssertEqual(defaultLimits.max_request_line, 8192)
        XCTAssertEqual(defaultLimits.max_header_size, 65536)
        XCTAssertEqual(defaultLimits.max_headers, 100)
        let longTarget = "GET /" + String(repeating: "a", count: 8200) + " HTTP/1.1\r\n\r\n"
        XCTAssertEqual(parse(longTarget), .error(Int(GS_HTTP_URI_TOO_LONG)))
        let many = "GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 101) + "\r\n"
        XCTAssertEqual(parse(many), .error(Int(GS_HTTP_TOO_MANY_HEADERS)))
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "y", count: 65536) + "\r\n\r\n"
        XCTAssertEqual(parse(big), .error(Int(GS_HTTP_HEADERS_TOO_LARGE)))
    }

    func testStatusOfEachResult() {
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_BAD_REQUEST)), 400)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_URI_TOO_LONG)), 414)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_HEADERS_TOO_LARGE)), 431)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_TOO_MANY_HEADERS)), 431)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_VERSION_NOT_SUPPORTED)), 505)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_NOT_IMPLEMENTED)), 501)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_BODY_TOO_LARGE)), 413)
        XCTAssertEqual(gs_http_status(Int(GS_HTTP_INCOMPLETE)), 0)
        XCTAssertEqual(gs_http_status(42), 0)
    }
}
