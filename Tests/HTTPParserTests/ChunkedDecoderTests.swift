// The chunked body decoder: in place and incremental (any split gives the same body and
// the same bytes after it), extensions skipped, trailers consumed, sizes overflow-checked,
// max_body enforced as soon as a chunk size passes it, every malformed shape refused.
import CHTTP
import XCTest

final class ChunkedDecoderTests: XCTestCase {
    static let bodies: [(String, String, String)] = [   // wire, decoded, after
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", ""),
        ("5;name=value;x=\"q;,\"\r\nhello\r\n0\r\nTrailer-A: 1\r\nTrailer-B:\t2 3\r\n\r\nGET / HTTP/1.1\r\n\r\n", "hello",
         "GET / HTTP/1.1\r\n\r\n"),
        ("A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n", "0123456789abcdefghij", ""),
        ("0000000000000000000003 \t;e\r\nabc\r\n0\r\n\r\nX", "abc", "X"),
        ("0\r\n\r\n", "", ""),
        ("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n", ""),
    ]

    private func decode(_ s: String, maxBody: UInt64 = .max) -> (result: Int, body: String, after: String) {
        let r = decodeChunked([bytes(s)], maxBody: maxBody)
        return (r.result, latin1(r.body[...]), latin1(r.after[...]))
    }

    func testDecodesChunksSkipsExtensionsAndConsumesTrailers() {
        for (wire, body, after) in Self.bodies {
            let r = decode(wire)
            XCTAssertEqual(r.result, after.utf8.count, wire.debugDescription)
            XCTAssertEqual(r.body, body, wire.debugDescription)
            XCTAssertEqual(r.after, after, wire.debugDescription)
        }
    }

    func testEverySplitDecodesTheSame() {
        for (wire, body, after) in Self.bodies {
            let b = bytes(wire)
            for k in 0 ... b.count {
                let r = decodeChunked([Array(b[..<k]), Array(b[k...])])
                XCTAssertGreaterThanOrEqual(r.result, 0, "\(wire.debugDescription) split at \(k)")
                XCTAssertEqual(latin1(r.body[...]), body, "\(wire.debugDescription) split at \(k)")
                XCTAssertEqual(latin1(r.after[...]), after, "\(wire.debugDescription) split at \(k)")
            }
            let r = decodeChunked(b.map { [$0] })
            XCTAssertEqual(latin1(r.body[...]), body, "\(wire.debugDescription) byte by byte")
            XCTAssertEqual(latin1(r.after[...]), after, "\(wire.debugDescription) byte by byte")
        }
    }

    func testEverySplitOfABadBodyGivesTheSameError() {
        for wire in ["5\r\nhelloX\r\n0\r\n\r\n", "10000000000000000\r\n", "0\r\n folded\r\n\r\n", "5;\u{01}\r\n"] {
            let b = bytes(wire)
            let whole = decodeChunked([b]).result
            XCTAssertEqual(whole, GS_HTTP_BAD_REQUEST, wire.debugDescription)
            for k in 0 ... b.count {
                XCTAssertEqual(decodeChunked([Array(b[..<k]), Array(b[k...])]).result, whole, "\(wire.debugDescription) split at \(k)")
            }
        }
    }

    func testIncompleteBodiesSayIncomplete() {
        for wire in ["", "5", "5\r", "5\r\n", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n0", "5\r\nhello\r\n0\r\n",
                     "5\r\nhello\r\n0\r\nT: 1\r\n", "5\r\nhello\r\n0\r\nT: 1\r\n\r"] {
            XCTAssertEqual(decode(wire).result, GS_HTTP_INCOMPLETE, wire.debugDescription)
        }
        XCTAssertEqual(decode("5\r\nhel").body, "hel")
    }

    func testMalformedBodiesAreRefused() {
        let bad = [
            "5\r\nhelloX\r\n0\r\n\r\n",          // data not followed by a line end
            "5\r\nhello\r0\r\n\r\n",             // CR without LF after data
            "5\r\nhell\r\n0\r\n\r\n\r\n",        // too short: "\r\n" read as data, then "0" where a line end belongs
            "\r\n", "g\r\n", "-5\r\n", "0x5\r\n", " 5\r\n", ";x\r\n",
            "5 x\r\n", "5\rx", "5;\u{01}\r\n", "5;\u{7F}\r\n",
            "10000000000000000\r\n",             // 17 hex digits: past 64 bits
            "0\r\n folded: x\r\n\r\n", "0\r\nBad Name: x\r\n\r\n", "0\r\nX: \u{01}\r\n\r\n", "0\r\nX\r\n\r\n",
            "0\r\n\rX", "0\r\nX: a\rb\r\n\r\n",
            // a bare LF anywhere (chunked bodies take CRLF only, see http_parser.h)
            "3\nabc\r\n0\r\n\r\n", "3\r\nabc\n0\r\n\r\n", "3;e\nabc\r\n", "3\r\nabc\r\n0\n\r\n", "3\r\nabc\r\n0\r\n\n",
            "0\r\nT: v\n\r\n",
        ]
        for wire in bad {
            XCTAssertEqual(decode(wire).result, GS_HTTP_BAD_REQUEST, wire.debugDescription)
        }
        XCTAssertEqual(gs_http_status(GS_HTTP_BAD_REQUEST), 400)
    }

    func testSizeLinesAreLimited() {
        let long = "5;" + String(repeating: "e", count: 4090) + "\r\nhello\r\n0\r\n\r\n"   // 4092 + CRLF: 4094
        XCTAssertEqual(decode(long).body, "hello")
        let tooLong = "5;" + String(repeating: "e", count: 4095) + "\r\n"
        XCTAssertEqual(decode(tooLong).result, GS_HTTP_BAD_REQUEST)
    }

    func testMaxBodyIsEnforcedByTheSizeLine() {
        XCTAssertEqual(decode("5\r\nhello\r\n0\r\n\r\n", maxBody: 5).body, "hello")
        XCTAssertEqual(decode("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", maxBody: 5).result, GS_HTTP_BODY_TOO_LARGE)
        // before any data arrives, and for sizes that are nearly 2^64
        XCTAssertEqual(decode("6\r\n", maxBody: 5).result, GS_HTTP_BODY_TOO_LARGE)
        XCTAssertEqual(decode("ffffffffffffffff\r\n", maxBody: 1 << 20).result, GS_HTTP_BODY_TOO_LARGE)
        XCTAssertEqual(decode("1\r\nx\r\nffffffffffffffff\r\n").result, GS_HTTP_BODY_TOO_LARGE)   // total would wrap
        XCTAssertEqual(gs_http_status(GS_HTTP_BODY_TOO_LARGE), 413)
    }

    func testTrailerSectionIsLimited() {
        var d = gs_http_chunked()
        gs_http_chunked_init(&d, .max)
        XCTAssertEqual(d.max_line, 4096)
        XCTAssertEqual(d.max_trailers, 65536)
        let trailers = "0\r\n" + String(repeating: "T: v\r\n", count: 11000) + "\r\n"
        XCTAssertEqual(decode(trailers).result, GS_HTTP_HEADERS_TOO_LARGE)
        let some = "0\r\n" + String(repeating: "T: v\r\n", count: 100) + "\r\n"
        XCTAssertEqual(decode(some).result, 0)
    }

    func testInDataAndCallsAfterTheEnd() {
        var d = gs_http_chunked()
        gs_http_chunked_init(&d, .max)
        var piece = bytes("5\r\nhe")
        var size = piece.count
        let r = piece.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { gs_http_decode_chunked(&d, $0, &size) }
        }
        XCTAssertEqual(r, GS_HTTP_INCOMPLETE)
        XCTAssertEqual(size, 2)
        XCTAssertEqual(gs_http_chunked_in_data(&d), 1)
        XCTAssertEqual(d.left, 3)
        XCTAssertEqual(d.total, 2)
        // after the end, every byte is after the body
        let done = decodeChunked([bytes("0\r\n\r\n"), bytes("next")])
        XCTAssertEqual(done.result, 0)
        XCTAssertEqual(latin1(done.after[...]), "next")
        var ended = gs_http_chunked()
        gs_http_chunked_init(&ended, .max)
        var first = bytes("0\r\n\r\n"), second = bytes("more")
        var n1 = first.count, n2 = second.count
        _ = first.withUnsafeMutableBufferPointer { p in p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { gs_http_decode_chunked(&ended, $0, &n1) } }
        let again = second.withUnsafeMutableBufferPointer { p in p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { gs_http_decode_chunked(&ended, $0, &n2) } }
        XCTAssertEqual(again, 4)
        XCTAssertEqual(n2, 0)
    }
}
