import XCTest

@testable import TobyTCP

final class TobyProtocolTests: XCTestCase {
    /// The Rust crate's vectors (big-endian on its wire).
    static let crateVectors: [(UInt64, [UInt8])] = [
        (256, [0, 0, 0, 0, 0, 0, 1, 0]),
        (257, [0, 0, 0, 0, 0, 0, 1, 1]),
        (512, [0, 0, 0, 0, 0, 0, 2, 0]),
        (601, [0, 0, 0, 0, 0, 0, 2, 0x59]),
        (1024, [0, 0, 0, 0, 0, 0, 4, 0]),
        (2048, [0, 0, 0, 0, 0, 0, 8, 0]),
        (2313, [0, 0, 0, 0, 0, 0, 9, 9]),
        (87_135_391_918_831, [0x00, 0x00, 0x4f, 0x3f, 0xca, 0x15, 0x2a, 0xef]),
    ]

    func testCrateVectorsBigEndian() {
        for (length, bytes) in Self.crateVectors {
            XCTAssertEqual(TobyProtocol.prefix(length: length, byteOrder: .bigEndian), bytes, "\(length)")
            XCTAssertEqual(TobyProtocol.length(fromPrefix: bytes, byteOrder: .bigEndian), length)
        }
    }

    func testCrateVectorsLittleEndianAreReversed() {
        for (length, bytes) in Self.crateVectors {
            XCTAssertEqual(TobyProtocol.prefix(length: length), Array(bytes.reversed()), "\(length)")
            XCTAssertEqual(TobyProtocol.length(fromPrefix: bytes.reversed()), length)
        }
    }

    func testReadmeExample() {
        let frame = TobyProtocol.encode(Array("toby is a good dog".utf8))
        XCTAssertEqual(frame.count, 26)
        XCTAssertEqual(Array(frame.prefix(12)), [0x12, 0, 0, 0, 0, 0, 0, 0, 0x74, 0x6f, 0x62, 0x79])
        XCTAssertEqual(Array(frame.dropFirst(8)), Array("toby is a good dog".utf8))
        let big = TobyProtocol.encode(Array("toby is a good dog".utf8), byteOrder: .bigEndian)
        XCTAssertEqual(Array(big.prefix(8)), [0, 0, 0, 0, 0, 0, 0, 0x12])
    }

    func testRoundTripsAcrossTheRange() {
        var values: [UInt64] = [0, 1, 255, 256, UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max - 1, UInt64.max]
        for byte in 0..<8 {
            for value in [UInt64(1), 0x7f, 0x80, 0xff] { values.append(value << (8 * byte)) }
        }
        var rng = SplitMix64(state: 42)
        for _ in 0..<10_000 { values.append(rng.next() >> (rng.next() % 64)) }
        for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
            for value in values {
                let prefix = TobyProtocol.prefix(length: value, byteOrder: order)
                XCTAssertEqual(prefix.count, 8)
                XCTAssertEqual(TobyProtocol.length(fromPrefix: prefix, byteOrder: order), value)
            }
        }
    }

    func testEveryPrefixByteLandsInItsPlace() {
        for position in 0..<8 {
            for byte in 0...255 {
                let value = UInt64(byte) << (8 * position)
                var expected = [UInt8](repeating: 0, count: 8)
                expected[position] = UInt8(byte)
                XCTAssertEqual(TobyProtocol.prefix(length: value), expected)
                XCTAssertEqual(TobyProtocol.prefix(length: value, byteOrder: .bigEndian), expected.reversed())
            }
        }
    }

    func testLengthFromPrefixRejectsWrongSizes() {
        XCTAssertNil(TobyProtocol.length(fromPrefix: [UInt8](repeating: 0, count: 7)))
        XCTAssertNil(TobyProtocol.length(fromPrefix: [UInt8](repeating: 0, count: 9)))
    }
}
