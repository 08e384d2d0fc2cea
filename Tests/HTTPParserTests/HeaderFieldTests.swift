// Header fields (RFC 9112 §5): token names followed at once by ':', values trimmed of
// OWS with their inner whitespace kept, repeats kept in order, and the smuggling-prone
// shapes (whitespace before the colon, obs-fold, controls) refused. Plus the name and list
// helpers a server uses on them.
import CHTTP
import XCTest

final class HeaderFieldTests: XCTestCase {
    private func fields(_ lines: String, file: StaticString = #filePath, line: UInt = #line) -> [Field]? {
        let r = parse("GET / HTTP/1.1\r\n" + lines + "\r\n")
        XCTAssertNotNil(r.head, "\(lines.debugDescription): \(r)", file: file, line: line)
        return r.head?.fields
    }

    private func refused(_ lines: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(parse("GET / HTTP/1.1\r\n" + lines + "\r\n"), .error(Int(GS_HTTP_BAD_REQUEST)), lines.debugDescription,
                       file: file, line: line)
    }

    func testValuesAreTrimmedOfOWSOnly() {
        let cases: [(String, String)] = [
            ("X: v\r\n", "v"), ("X:v\r\n", "v"), ("X:   v   \r\n", "v"), ("X:\tv\t\r\n", "v"), ("X: \t v \t \r\n", "v"),
            ("X:\r\n", ""), ("X:   \r\n", ""), ("X: a b\tc  d\r\n", "a b\tc  d"), ("X: \u{00E9}t\u{00E9}\r\n", "\u{00C3}\u{00A9}t\u{00C3}\u{00A9}"),
            ("X: \"quoted: value\" ; a=b, c\r\n", "\"quoted: value\" ; a=b, c"), ("X: :::\r\n", ":::"),
        ]
        for (line, value) in cases {
            XCTAssertEqual(fields(line), [Field(name: "X", value: value)], line.debugDescription)
        }
    }

    func testNamesAreTokensKeptAsSent() {
        XCTAssertEqual(fields("Content-Type: a\r\nx-lower: b\r\nX!#$%&'*+-.^_`|~0: c\r\n"),
                       [Field(name: "Content-Type", value: "a"), Field(name: "x-lower", value: "b"),
                        Field(name: "X!#$%&'*+-.^_`|~0", value: "c")])
        for bad in ["Ho(st: a\r\n", "X@: a\r\n", ": a\r\n", "X\u{00}: a\r\n", "\u{00E9}: a\r\n", "X/Y: a\r\n", "X\"Y: a\r\n",
                    "Host a\r\n", "Host\r\n"] {
            refused(bad)
        }
    }

    func testNoWhitespaceBetweenNameAndColon() {
        refused("Host : a\r\n")
        refused("Host\t: a\r\n")
        refused("Transfer-Encoding : chunked\r\n")
    }

    func testObsFoldAndLeadingWhitespaceAreRefused() {
        refused("X: a\r\n b\r\n")
        refused("X: a\r\n\tb\r\n")
        refused(" Host: a\r\n")      // whitespace between the start line and the first field
        refused("\tHost: a\r\n")
    }

    func testControlsInValuesAreRefusedExceptHTAB() {
        for c in [0x00, 0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F] as [UInt8] {
            var b = bytes("GET / HTTP/1.1\r\nX: a")
            b.append(c)
            b += bytes("b\r\n\r\n")
            XCTAssertEqual(parse(b), .error(Int(GS_HTTP_BAD_REQUEST)), "byte \(c)")
        }
        XCTAssertEqual(fields("X: a\tb\r\n"), [Field(name: "X", value: "a\tb")])
        // and long values hit the same checks in the sixteen-byte steps
        let long = String(repeating: "v", count: 40)
        refused("X: \(long)\u{7F}\(long)\r\n")
        refused("X: \(long)\u{01}\r\n")
        XCTAssertEqual(fields("X: \(long)\t\(long)\r\n"), [Field(name: "X", value: "\(long)\t\(long)")])
    }

    func testRepeatedFieldsAreKeptInOrder() {
        let f = fields("Accept: a\r\nX: 1\r\naccept: b\r\nACCEPT: c\r\n")
        XCTAssertEqual(f, [Field(name: "Accept", value: "a"), Field(name: "X", value: "1"),
                           Field(name: "accept", value: "b"), Field(name: "ACCEPT", value: "c")])
        // gs_http_find_header walks them
        let b = bytes("GET / HTTP/1.1\r\nAccept: a\r\nX: 1\r\naccept: b\r\nACCEPT: c\r\n\r\n")
        var lim = defaultLimits
        var req = gs_http_request()
        var hs = [gs_http_header](repeating: gs_http_header(), count: 100)
        let found: [Int] = withBytes(b) { p, n in
            XCTAssertGreaterThan(gs_http_parse_request(p, n, 0, &lim, &req, &hs), 0)
            var at: [Int] = []
            var from = 0
            while true {
                let i = gs_http_find_header(p, &hs, Int(req.num_headers), from, "aCCept", 6)
                if i < 0 { break }
                at.append(i)
                from = i + 1
            }
            XCTAssertEqual(gs_http_find_header(p, &hs, Int(req.num_headers), 0, "Accep", 5), -1)
            return at
        }
        XCTAssertEqual(found, [0, 2, 3])
    }

    func testNameEquality() {
        XCTAssertEqual(gs_http_name_equal("Content-Length", 14, "content-length", 14), 1)
        XCTAssertEqual(gs_http_name_equal("CONTENT-LENGTH", 14, "content-length", 14), 1)
        XCTAssertEqual(gs_http_name_equal("Content-Length", 14, "content-lengtx", 14), 0)
        XCTAssertEqual(gs_http_name_equal("Content-Length", 14, "content-length", 13), 0)
        XCTAssertEqual(gs_http_name_equal("^", 1, "~", 1), 0)   // 0x5E and 0x7E: only letters fold
        XCTAssertEqual(gs_http_name_equal("@", 1, "`", 1), 0)
        XCTAssertEqual(gs_http_name_equal("", 0, "", 0), 1)
        var out = [CChar](repeating: 0, count: 12)
        gs_http_lowercase(&out, "X-Forwarded", 11)
        XCTAssertEqual(latin1(out[0 ..< 11].map { UInt8(bitPattern: $0) }[...]), "x-forwarded")
    }

    func testListMembership() {
        let has = { (v: String, t: String) in gs_http_list_has(v, v.utf8.count, t, t.utf8.count) == 1 }
        XCTAssertTrue(has("close", "close"))
        XCTAssertTrue(has("keep-alive, Close", "close"))
        XCTAssertTrue(has(" , close ,", "close"))
        XCTAssertTrue(has("Upgrade,\tkeep-alive", "KEEP-ALIVE"))
        XCTAssertTrue(has("100-Continue", "100-continue"))
        XCTAssertFalse(has("closed", "close"))
        XCTAssertFalse(has("not close", "close"))
        XCTAssertFalse(has("", "close"))
        XCTAssertFalse(has(",,", "close"))
    }
}
