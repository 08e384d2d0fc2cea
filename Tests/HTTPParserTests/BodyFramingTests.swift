// Body framing (RFC 9112 §6): Content-Length read strictly, Transfer-Encoding classified,
// and the request-smuggling shapes refused: both framings at once, two different lengths,
// chunked in HTTP/1.0, chunked not last or twice.
import CHTTP
import XCTest

final class BodyFramingTests: XCTestCase {
    private func contentLength(_ v: String) -> UInt64? {
        var n: UInt64 = 0
        return gs_http_parse_content_length(v, v.utf8.count, &n) == 0 ? n : nil
    }

    private func te(_ v: String) -> Int32 { gs_http_transfer_encoding(v, v.utf8.count) }

    func testContentLengthIsDigitsOnly() {
        XCTAssertEqual(contentLength("0"), 0)
        XCTAssertEqual(contentLength("42"), 42)
        XCTAssertEqual(contentLength("007"), 7)
        XCTAssertEqual(contentLength("9223372036854775807"), UInt64(Int64.max))
        XCTAssertEqual(contentLength("0000000000000000000000000001"), 1)
        for bad in ["", "1,1", "1, 1", "+1", "-1", " 1 2", "1 2", "1 ", " 1", "0x10", "1e3", "1.0", "\u{FF11}",
                    "9223372036854775808", "18446744073709551616", "99999999999999999999"] {
            XCTAssertNil(contentLength(bad), bad.debugDescription)
        }
    }

    func testTransferEncodingClasses() {
        for ok in ["chunked", "Chunked", "CHUNKED", " chunked ", "chunked,", ", chunked", "\tchunked\t,,"] {
            XCTAssertEqual(te(ok), Int32(GS_HTTP_BODY_CHUNKED), ok.debugDescription)
        }
        for unsupported in ["gzip, chunked", "deflate,chunked", "x-custom, chunked", "gzip;q=1, chunked"] {
            XCTAssertEqual(te(unsupported), Int32(GS_HTTP_NOT_IMPLEMENTED), unsupported.debugDescription)
        }
        // chunked not last (RFC 9112 §6.3: the length cannot be known), twice, or no list at all
        for bad in ["gzip", "identity", "chunked, gzip", "chunked, chunked", "chunked;x=1", "", " , ", "chun ked",
                    "\"chunked\"", "chunked\u{01}", "chunked gzip"] {
            XCTAssertEqual(te(bad), Int32(GS_HTTP_BAD_REQUEST), bad.debugDescription)
        }
    }

    func testFramingOfARequest() {
        XCTAssertEqual(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n").0, Int(GS_HTTP_BODY_NONE))
        XCTAssertEqual(framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").0, Int(GS_HTTP_BODY_LENGTH))
        XCTAssertEqual(framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").1, 12)
        XCTAssertEqual(framing("POST / HTTP/1.0\r\ncontent-length: 0\r\n\r\n").0, Int(GS_HTTP_BODY_LENGTH))
        XCTAssertEqual(framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").0, Int(GS_HTTP_BODY_CHUNKED))
        // equal repeats are one length
        let repeated = framing("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n")
        XCTAssertEqual(repeated.0, Int(GS_HTTP_BODY_LENGTH))
        XCTAssertEqual(repeated.1, 5)
        // several Transfer-Encoding fields are one list
        XCTAssertEqual(framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n").0,
                       Int(GS_HTTP_NOT_IMPLEMENTED))
    }

    func testSmugglingShapesAreRefused() {
        let bad = Int(GS_HTTP_BAD_REQUEST)
        let shapes = [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1,2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
        ]
        for s in shapes {
            XCTAssertEqual(framing(s).0, bad, s.debugDescription)
        }
        // and the ones the head parser already refuses, before framing is asked
        for s in ["POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", "POST / HTTP/1.1\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
                  "POST / HTTP/1.1\r\nContent-Length:\u{0B}5\r\n\r\n"] {
            XCTAssertEqual(parse(s), .error(bad), s.debugDescription)
        }
    }
}
