// The request line (RFC 9112 §3): exactly `method SP request-target SP HTTP/1.x` and a
// line end, each target form split into path, query and authority, the version checked,
// and every deviation refused with the status SPEC §11 names.
import CHTTP
import XCTest

final class RequestLineTests: XCTestCase {
    private func head(_ line: String, file: StaticString = #filePath, line n: UInt = #line) -> Head? {
        let r = parse(line + "\r\nHost: a\r\n\r\n")
        XCTAssertNotNil(r.head, "\(line.debugDescription): \(r)", file: file, line: n)
        return r.head
    }

    private func refused(_ request: String, _ code: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(parse(request), .error(code), request.debugDescription, file: file, line: line)
    }

    func testMethodsAreAnyToken() {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "M-SEARCH", "PROPFIND",
                  "get", "X!#$%&'*+-.^_`|~9"] {
            XCTAssertEqual(head("\(m) / HTTP/1.1")?.method, m)
        }
        for m in ["GE(T", "GE\"T", "G@T", "GET\u{7F}", "\u{00E9}"] {
            refused("\(m) / HTTP/1.1\r\n\r\n", Int(GS_HTTP_BAD_REQUEST))
        }
    }

    func testOriginFormPathAndQuery() {
        let cases: [(String, String, String?)] = [
            ("/", "/", nil), ("/a/b.html", "/a/b.html", nil), ("/a?x=1&y=2", "/a", "x=1&y=2"), ("/a?", "/a", ""),
            ("/?x?y", "/", "x?y"), ("/a%20b?q=%2F", "/a%20b", "q=%2F"), ("//double//", "//double//", nil),
            ("/#frag", "/#frag", nil),
        ]
        for (target, path, query) in cases {
            let h = head("GET \(target) HTTP/1.1")
            XCTAssertEqual(h?.target, target)
            XCTAssertEqual(h?.path, path, target)
            XCTAssertEqual(h?.query, query, target)
            XCTAssertEqual(h?.form, Int(GS_HTTP_ORIGIN_FORM))
            XCTAssertEqual(h?.authority, "")
        }
    }

    func testAbsoluteForm() {
        let cases: [(String, String, String, String?)] = [
            ("http://example.com/p?q=1", "example.com", "/p", "q=1"), ("http://example.com", "example.com", "", nil),
            ("https://h:8080?x", "h:8080", "", "x"), ("HTTP://user@h/a/b", "user@h", "/a/b", nil),
            ("coap+tcp://h/", "h", "/", nil),
        ]
        for (target, authority, path, query) in cases {
            let h = head("GET \(target) HTTP/1.1")
            XCTAssertEqual(h?.form, Int(GS_HTTP_ABSOLUTE_FORM), target)
            XCTAssertEqual(h?.authority, authority, target)
            XCTAssertEqual(h?.path, path, target)
            XCTAssertEqual(h?.query, query, target)
        }
    }

    func testAuthorityAndAsteriskForms() {
        let connect = head("CONNECT example.com:443 HTTP/1.1")
        XCTAssertEqual(connect?.form, Int(GS_HTTP_AUTHORITY_FORM))
        XCTAssertEqual(connect?.path, "example.com:443")
        XCTAssertNil(connect?.query)
        let options = head("OPTIONS * HTTP/1.1")
        XCTAssertEqual(options?.form, Int(GS_HTTP_ASTERISK_FORM))
        XCTAssertEqual(options?.path, "*")
        // neither splits a query, and "*x" or "1http://" are not the other forms
        XCTAssertEqual(head("GET foo?bar HTTP/1.1")?.path, "foo?bar")
        XCTAssertEqual(head("GET *x HTTP/1.1")?.form, Int(GS_HTTP_AUTHORITY_FORM))
        XCTAssertEqual(head("GET 1http://h/ HTTP/1.1")?.form, Int(GS_HTTP_AUTHORITY_FORM))
    }

    func testTargetBytes() {
        // raw UTF-8 (obs-text) is taken, as nginx takes it
        XCTAssertEqual(head("GET /caf\u{00E9} HTTP/1.1")?.path, "/caf\u{00C3}\u{00A9}")
        for bad in ["/a\u{7F}", "/a\u{01}", "/a\u{00}b", "/a\tb"] {
            refused("GET \(bad) HTTP/1.1\r\n\r\n", Int(GS_HTTP_BAD_REQUEST))
        }
    }

    func testVersions() {
        XCTAssertEqual(head("GET / HTTP/1.1")?.minor, 1)
        XCTAssertEqual(head("GET / HTTP/1.0")?.minor, 0)
        for v in ["HTTP/1.2", "HTTP/1.9", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
            refused("GET / \(v)\r\nHost: a\r\n\r\n", Int(GS_HTTP_VERSION_NOT_SUPPORTED))
        }
        // 505 is answered as soon as the request line is in, before the fields
        XCTAssertEqual(parse("PRI * HTTP/2.0\r\n"), .error(Int(GS_HTTP_VERSION_NOT_SUPPORTED)))
        XCTAssertEqual(parse("PRI * HTTP/2.0\r\n").status, 505)
        for v in ["HTTP/1.10", "HTTP/11", "http/1.1", "HTTP/1.1 ", "HTTP/1", "HTTP/1.", "HTTP/a.1", "HTTP 1.1", "HTTP/1.1x",
                  "HTTPS/1.1", " HTTP/1.1"] {
            refused("GET / \(v)\r\nHost: a\r\n\r\n", Int(GS_HTTP_BAD_REQUEST))
        }
    }

    func testShapeIsExact() {
        for line in ["GET  / HTTP/1.1", " GET / HTTP/1.1", "GET\t/ HTTP/1.1", "GET /\tHTTP/1.1", "GET / HTTP/1.1 ",
                     "GET HTTP/1.1", "GET /", "GET / ", "/ HTTP/1.1", "GET / HTTP/1.1 extra", "GET /  HTTP/1.1"] {
            refused(line + "\r\n\r\n", Int(GS_HTTP_BAD_REQUEST))
        }
        XCTAssertEqual(parse("GET / HTTP/1.1\r\n\r\n").status, 0)
        XCTAssertEqual(parse("GET  / HTTP/1.1\r\n\r\n").status, 400)
    }

    func testLeadingEmptyLinesAreSkipped() {
        let h = parse("\r\n\r\nGET / HTTP/1.1\r\n\r\n").head
        XCTAssertEqual(h?.method, "GET")
        XCTAssertEqual(h?.length, 4 + 18)
        XCTAssertEqual(parse("\nGET / HTTP/1.1\n\n").head?.method, "GET")
        XCTAssertEqual(parse("\nGET / HTTP/1.1\r\n\r\n", limits: limits(strict: true)), .error(Int(GS_HTTP_BAD_REQUEST)))
        XCTAssertEqual(parse("\r\nGET / HTTP/1.1\r\n\r\n", limits: limits(strict: true)).head?.method, "GET")
        XCTAssertEqual(parse("\r\n\r\n"), .incomplete)
        XCTAssertEqual(parse("\r\r\nGET / HTTP/1.1\r\n\r\n"), .error(Int(GS_HTTP_BAD_REQUEST)))
    }

    func testLineEnds() {
        // a bare LF ends a line (documented in http_parser.h), unless strict
        let lf = "GET /x HTTP/1.1\nHost: a\n\n"
        XCTAssertEqual(parse(lf).head?.fields, [Field(name: "Host", value: "a")])
        XCTAssertEqual(parse(lf).head?.length, lf.utf8.count)
        XCTAssertEqual(parse("GET / HTTP/1.1\r\nHost: a\n\r\n").head?.fields.count, 1)
        XCTAssertEqual(parse(lf, limits: limits(strict: true)), .error(Int(GS_HTTP_BAD_REQUEST)))
        XCTAssertEqual(parse("GET / HTTP/1.1\r\nHost: a\r\n\n", limits: limits(strict: true)), .error(Int(GS_HTTP_BAD_REQUEST)))
        // a bare CR never does
        for r in ["GET / HTTP/1.1\rHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
                  "GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "GET /\r HTTP/1.1\r\n\r\n"] {
            refused(r, Int(GS_HTTP_BAD_REQUEST))
        }
    }

    func testPipelinedRequestsParseOneAtATime() {
        let two = bytes("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        guard let first = parse(two).head else { return XCTFail("first request") }
        XCTAssertEqual(first.path, "/1")
        let rest = Array(two[first.length...])
        let second = parse(rest).head
        XCTAssertEqual(second?.path, "/2")
        XCTAssertEqual(second?.length, rest.count)
    }
}
