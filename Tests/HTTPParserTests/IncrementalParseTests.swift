// A head arriving in pieces: whatever the split, the parse of the whole is the same, a
// prefix is "incomplete" (or, for a bad request, already the same error), and the
// last_len re-parse agrees with a fresh one.
import CHTTP
import XCTest

final class IncrementalParseTests: XCTestCase {
    static let requests = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /index.html?q=1&r=%20x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        "POST /form HTTP/1.0\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc",
        "GET http://example.com/p?x HTTP/1.1\nHost: example.com\n\n",
        "\r\n\nOPTIONS * HTTP/1.1\r\nX:\t\r\nY:  spaced  value \r\n\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\r\n",
        "GET /a HTTP/1.1\r\nCookie: " + String(repeating: "k=v; ", count: 40) + "\r\nAccept: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ]

    static let malformed: [(String, Int)] = [
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", Int(GS_HTTP_BAD_REQUEST)),
        ("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", Int(GS_HTTP_BAD_REQUEST)),
        ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Int(GS_HTTP_BAD_REQUEST)),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Int(GS_HTTP_VERSION_NOT_SUPPORTED)),
        ("GET  / HTTP/1.1\r\n\r\n", Int(GS_HTTP_BAD_REQUEST)),
        ("GET / HTTP/1.1\r\nX: \u{01}\r\n\r\n", Int(GS_HTTP_BAD_REQUEST)),
    ]

    func testEverySplitOfAValidRequestGivesTheSameHead() {
        for r in Self.requests {
            let b = bytes(r)
            guard let whole = parse(b).head else { XCTFail("\(r.debugDescription) does not parse"); continue }
            for k in 0 ..< whole.length {
                XCTAssertEqual(parse(b, count: k), .incomplete, "\(r.debugDescription) cut at \(k)")
                XCTAssertEqual(parse(b, lastLen: k), .head(whole), "\(r.debugDescription) re-parsed after \(k)")
            }
        }
    }

    func testOneByteAtATimeCompletesExactlyAtTheEndOfTheHead() {
        for r in Self.requests {
            let b = bytes(r)
            guard let whole = parse(b).head else { XCTFail("\(r.debugDescription) does not parse"); continue }
            var last = 0
            var done: (Int, Parse)?
            for k in 1 ... b.count {
                let p = parse(b, count: k, lastLen: last)
                if p != .incomplete { done = (k, p); break }
                last = k
            }
            XCTAssertEqual(done?.0, whole.length, r.debugDescription)
            XCTAssertEqual(done?.1, .head(whole), r.debugDescription)
        }
    }

    func testEverySplitOfABadRequestGivesTheSameError() {
        for (r, code) in Self.malformed {
            let b = bytes(r)
            XCTAssertEqual(parse(b), .error(code), r.debugDescription)
            for k in 0 ..< b.count {
                let prefix = parse(b, count: k)
                XCTAssertTrue(prefix == .incomplete || prefix == .error(code), "\(r.debugDescription) cut at \(k): \(prefix)")
                if prefix == .incomplete {
                    XCTAssertEqual(parse(b, lastLen: k), .error(code), "\(r.debugDescription) re-parsed after \(k)")
                }
            }
        }
    }

    func testLastLenFindsTheEndAcrossTheSplit() {
        // the empty line split between its CR and LF, and between the two line ends
        let b = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        for cut in [b.count - 1, b.count - 2, b.count - 3] {
            XCTAssertEqual(parse(b, count: cut), .incomplete)
            XCTAssertEqual(parse(b, lastLen: cut).head?.length, b.count)
        }
        // a last_len past the bytes is taken as a first parse
        XCTAssertEqual(parse(b, lastLen: b.count + 10).head?.length, b.count)
    }
}
