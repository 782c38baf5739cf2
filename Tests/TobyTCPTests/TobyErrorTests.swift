import Foundation
import XCTest

@testable import TobyTCP

final class TobyErrorTests: XCTestCase {
    func testFrameTooLargeCarriesTheNumbers() {
        let error = TobyError.frameTooLarge(length: 1_000_000, limit: 1000, prefix: [0x40, 0x42, 0x0f, 0, 0, 0, 0, 0])
        XCTAssertTrue(error.description.contains("1000000"), error.description)
        XCTAssertTrue(error.description.contains("1000 bytes"), error.description)
        XCTAssertTrue(error.description.contains("40 42 0f 00"), error.description)
        XCTAssertFalse(error.description.contains("text protocol"), error.description)
    }

    func testPrintablePrefixSaysThePeerSpeaksText() {
        let prefix = Array("GET / HT".utf8)
        let length = TobyProtocol.length(fromPrefix: prefix)!
        let error = TobyError.frameTooLarge(length: length, limit: 64 << 20, prefix: prefix)
        XCTAssertTrue(error.description.contains("text protocol"), error.description)
        XCTAssertTrue(error.description.contains("GET / HT"), error.description)
    }

    func testTruncatedSaysHowManyBytesWereMissing() {
        let error = TobyError.truncatedFrame(expected: 1032, received: 100)
        XCTAssertEqual(error.missingBytes, 932)
        XCTAssertTrue(error.description.contains("932 bytes missing"), error.description)
        XCTAssertTrue(error.description.contains("1024-byte payload"), error.description)
        let prefixCut = TobyError.truncatedFrame(expected: 8, received: 3)
        XCTAssertTrue(prefixCut.description.contains("length prefix"), prefixCut.description)
        XCTAssertTrue(prefixCut.description.contains("5 bytes missing"), prefixCut.description)
    }

    func testSystemErrorNamesTheCallAndErrno() {
        let error = TobyError.system(operation: "recvmsg", errno: ECONNRESET)
        XCTAssertTrue(error.description.contains("'recvmsg'"), error.description)
        XCTAssertTrue(error.description.contains("(\(ECONNRESET))"), error.description)
        XCTAssertTrue(error.description.lowercased().contains("reset"), error.description)
    }
}

final class TobyErrorReadmeTests: XCTestCase {
    /// The README quotes this message; keep the two in step.
    func testReadmeFrameTooLargeExample() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(Array("HTTP/1.1 200 OK\r\n\r\n".utf8))
        XCTAssertThrowsError(try receiver.receive()) { error in
            XCTAssertEqual(
                "\(error)",
                "frame too large: peer announced 3543824036068086856 bytes, over the maximum frame length of 67108864 bytes (prefix bytes 48 54 54 50 2f 31 2e 31); connection closed, nothing allocated. The prefix reads as text (\"HTTP/1.1\"): the peer looks like it speaks a text protocol (HTTP, Redis, a shell?), not TobyTcp"
            )
        }
    }
}

/// `localizedDescription` (Foundation is imported here, not in the library)
/// is the library's sentence wherever the error's type is `TobyError`.
final class TobyErrorLocalizedDescriptionTests: XCTestCase {
    func testLocalizedDescriptionIsTheDescription() {
        let errors: [TobyError] = [
            .frameTooLarge(length: 9, limit: 8, prefix: []),
            .frameTooLarge(length: 1 << 40, limit: 8, prefix: Array("HTTP/1.1".utf8)),
            .truncatedFrame(expected: 20, received: 3), .alreadyStarted, .closed, .endOfStream,
            .timedOut(.seconds(1)), .writeTimedOut(.seconds(1)), .connectTimedOut(address: "127.0.0.1:9", timeout: .seconds(1)),
            .system(operation: "recvmsg", errno: ECONNRESET),
            .unresolvableHost(host: "nowhere", reason: "no"), .unixPathTooLong(path: "p", length: 200, limit: 107),
            .invalidConfiguration("maxFrameLength must be at least 1 (got 0)"),
        ]
        for error in errors {
            XCTAssertEqual(error.localizedDescription, error.description)
            XCTAssertFalse(error.localizedDescription.contains("could not be completed"))
        }
    }

    /// The usual shape: a typed `catch` after calls that throw `TobyError`.
    func testTypedCatchPrintsTheSentence() throws {
        let (messenger, _) = try makePair()
        try messenger.close()
        do {
            try messenger.send([1])
            XCTFail("send after close")
        } catch {
            XCTAssertEqual(error.localizedDescription, TobyError.closed.description)
        }
    }
}

/// The package's one hex encoder, as errors and the tool print it.
final class HexEncodingTests: XCTestCase {
    func testPlainAndSeparated() {
        let bytes: [UInt8] = [0x00, 0xff, 0x10, 0xa5]
        XCTAssertEqual(bytes.withUnsafeBytes { hexEncoded($0) }, "00ff10a5")
        XCTAssertEqual(bytes.withUnsafeBytes { hexEncoded($0, separator: UInt8(ascii: " ")) }, "00 ff 10 a5")
        XCTAssertEqual([UInt8]().withUnsafeBytes { hexEncoded($0, separator: UInt8(ascii: " ")) }, "")
        XCTAssertEqual([UInt8(0x7)].withUnsafeBytes { hexEncoded($0, separator: UInt8(ascii: ":")) }, "07")
    }
}
