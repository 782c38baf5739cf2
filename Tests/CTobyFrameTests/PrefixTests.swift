import CTobyFrame
import XCTest

final class PrefixTests: XCTestCase {
    private func encode(_ v: UInt64, _ order: toby_byte_order) -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: 8)
        toby_prefix_encode(v, order, &out)
        return out
    }

    private func decode(_ b: [UInt8], _ order: toby_byte_order) -> UInt64 {
        precondition(b.count == 8)
        return b.withUnsafeBufferPointer { toby_prefix_decode($0.baseAddress, order) }
    }

    private func check(_ v: UInt64, bigEndian be: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        let le = Array(be.reversed())
        XCTAssertEqual(encode(v, TOBY_BIG_ENDIAN), be, "BE encode \(v)", file: file, line: line)
        XCTAssertEqual(encode(v, TOBY_LITTLE_ENDIAN), le, "LE encode \(v)", file: file, line: line)
        XCTAssertEqual(decode(be, TOBY_BIG_ENDIAN), v, "BE decode \(hex(be))", file: file, line: line)
        XCTAssertEqual(decode(le, TOBY_LITTLE_ENDIAN), v, "LE decode \(hex(le))", file: file, line: line)
    }

    /// The vectors of the original Rust `tobytcp` crate (big-endian on its wire).
    func testCrateVectors() {
        check(256, bigEndian: [0, 0, 0, 0, 0, 0, 0x01, 0x00])
        check(257, bigEndian: [0, 0, 0, 0, 0, 0, 0x01, 0x01])
        check(512, bigEndian: [0, 0, 0, 0, 0, 0, 0x02, 0x00])
        check(601, bigEndian: [0, 0, 0, 0, 0, 0, 0x02, 0x59])
        check(1024, bigEndian: [0, 0, 0, 0, 0, 0, 0x04, 0x00])
        check(2048, bigEndian: [0, 0, 0, 0, 0, 0, 0x08, 0x00])
        check(2313, bigEndian: [0, 0, 0, 0, 0, 0, 0x09, 0x09])
        check(87_135_391_918_831, bigEndian: [0x00, 0x00, 0x4f, 0x3f, 0xca, 0x15, 0x2a, 0xef])
    }

    func testZeroAndMax() {
        check(0, bigEndian: [0, 0, 0, 0, 0, 0, 0, 0])
        check(UInt64.max, bigEndian: [UInt8](repeating: 0xff, count: 8))
        check(UInt64.max - 1, bigEndian: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe])
        check(1 << 63, bigEndian: [0x80, 0, 0, 0, 0, 0, 0, 0])
    }

    /// 1 << (8*i) for every position, and every byte value in every position.
    func testEverySingleBytePosition() {
        for i in 0..<8 {
            var be = [UInt8](repeating: 0, count: 8)
            be[7 - i] = 1
            check(UInt64(1) << (8 * UInt64(i)), bigEndian: be)
            for b in 0...255 {
                var be = [UInt8](repeating: 0, count: 8)
                be[7 - i] = UInt8(b)
                check(UInt64(b) << (8 * UInt64(i)), bigEndian: be)
            }
        }
    }

    func testDistinctBytesRoundTrip() {
        // Catches byte-order mix-ups a single non-zero byte cannot.
        check(0x0102_0304_0506_0708, bigEndian: [1, 2, 3, 4, 5, 6, 7, 8])
        var rng = TestRNG(seed: 7)
        for _ in 0..<2000 {
            let v = rng.next()
            check(v, bigEndian: referencePrefix(v, TOBY_BIG_ENDIAN))
        }
    }

    func testEncodeWritesExactlyEightBytes() {
        var out = [UInt8](repeating: 0xAA, count: 12)
        out.withUnsafeMutableBufferPointer { toby_prefix_encode(5, TOBY_LITTLE_ENDIAN, $0.baseAddress! + 2) }
        XCTAssertEqual(out, [0xAA, 0xAA, 5, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0xAA])
    }

    /// The README example through the real writer.
    func testReadmeExampleEncoding() {
        let text = Array("toby is a good dog".utf8)
        XCTAssertEqual(text.count, 18)
        let frames = OutFrames([text])
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.write(frames, index: &index, offset: &offset), 0)
        let out = w.io.written
        XCTAssertEqual(out.count, 26)
        XCTAssertEqual(Array(out.prefix(12)), [0x12, 0, 0, 0, 0, 0, 0, 0, 0x74, 0x6f, 0x62, 0x79])
        XCTAssertEqual(Array(out.suffix(18)), text)

        let wbe = WriterBox(order: TOBY_BIG_ENDIAN)
        index = 0
        offset = 0
        XCTAssertEqual(wbe.write(frames, index: &index, offset: &offset), 0)
        XCTAssertEqual(Array(wbe.io.written.prefix(8)), [0, 0, 0, 0, 0, 0, 0, 0x12])
    }

    func testStrerror() {
        XCTAssertEqual(String(cString: toby_strerror(0)), "success")
        for code in [TOBY_EFRAMETOOLARGE, TOBY_ETRUNCATED, TOBY_EINVAL] {
            let s = String(cString: toby_strerror(code))
            XCTAssertFalse(s.isEmpty)
            XCTAssertNotEqual(s, "unknown error")
        }
        XCTAssertEqual(String(cString: toby_strerror(-ECONNRESET)), String(cString: strerror(ECONNRESET)))
        XCTAssertEqual(String(cString: toby_strerror(-99999)), "unknown error")
        XCTAssertEqual(String(cString: toby_strerror(5)), "unknown error")
    }
}
