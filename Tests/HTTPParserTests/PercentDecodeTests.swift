// Percent-decoding of the path (SPEC §11's req.path): escapes decoded in any hex case,
// '+' and "%2F" left as the header says, in place or into another buffer, and "%00" and
// broken escapes refused.
import CHTTP
import XCTest

final class PercentDecodeTests: XCTestCase {
    func testDecodes() {
        XCTAssertEqual(percentDecode("/a%20b"), "/a b")
        XCTAssertEqual(percentDecode("/%e2%82%AC"), "/\u{00E2}\u{0082}\u{00AC}")   // the bytes of "€"
        XCTAssertEqual(percentDecode("/%2F%2f"), "///")
        XCTAssertEqual(percentDecode("/a+b"), "/a+b")
        XCTAssertEqual(percentDecode("/plain"), "/plain")
        XCTAssertEqual(percentDecode(""), "")
        XCTAssertEqual(percentDecode("%25"), "%")
        XCTAssertEqual(percentDecode("%2525"), "%25")
        XCTAssertEqual(percentDecode("%01%7F%FF"), "\u{01}\u{7F}\u{FF}")
    }

    func testRefusesNulAndBrokenEscapes() {
        for bad in ["%00", "/a%00b", "%", "/a%", "%2", "/%2", "%zz", "%g0", "%0g", "% 20", "%%20"] {
            XCTAssertNil(percentDecode(bad), bad.debugDescription)
        }
    }

    func testInPlace() {
        var b = bytes("/x%41%42y")
        let n = b.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { gs_http_percent_decode($0, p.count, $0) }
        }
        XCTAssertEqual(n, 5)
        XCTAssertEqual(latin1(b[0 ..< 5]), "/xABy")
    }
}
