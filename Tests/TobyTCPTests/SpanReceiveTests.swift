import XCTest

@testable import TobyTCP

#if compiler(>=6.2)
/// The `RawSpan` form of the borrowing receive: what it lends, and that the
/// receive's errors and the body's stay apart.
final class SpanReceiveTests: XCTestCase {
    private struct Rejected: Error, Equatable { let firstByte: UInt8 }

    private static func bytes(_ span: RawSpan) -> [UInt8] {
        (0..<span.byteCount).map { span.unsafeLoad(fromByteOffset: $0, as: UInt8.self) }
    }

    func testLendsEachMessageThenNilAtEndOfStream() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1, 2, 3]) + frame([]) + frame([9]))
        peer.shutdownWrite()
        XCTAssertEqual(try receiver.withNextMessage { Self.bytes($0) }, [1, 2, 3])
        XCTAssertEqual(try receiver.withNextMessage { Self.bytes($0) }, [])
        XCTAssertEqual(try receiver.withNextMessage { Self.bytes($0) }, [9])
        XCTAssertNil(try receiver.withNextMessage { Self.bytes($0) })
    }

    /// Frames in place, wrapping the ring's end, and larger than the ring.
    func testLendsWrappedAndLargeFrames() throws {
        let (messenger, peer) = try makePair(try TobyConfiguration(ringCapacity: 64))
        let receiver = try messenger.start()
        let payloads = (0..<40).map { pattern(($0 * 7) % 100, seed: UInt64($0)) }
        peer.write(payloads.flatMap { frame($0) })
        for payload in payloads {
            XCTAssertEqual(try receiver.withNextMessage { Self.bytes($0) }, payload)
        }
    }

    /// A body that throws consumes its message; the next call gets the next one.
    func testBodyErrorKeepsItsTypeAndConsumesTheMessage() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([7, 7]) + frame([8]))
        do {
            _ = try receiver.withNextMessage { (span) throws(Rejected) -> Int in
                throw Rejected(firstByte: span.unsafeLoad(as: UInt8.self))
            }
            XCTFail("the body threw")
        } catch .body(let rejected) {
            XCTAssertEqual(rejected, Rejected(firstByte: 7))
        } catch .receive(let error) {
            XCTFail("unexpected receive error \(error)")
        }
        XCTAssertEqual(try receiver.withNextMessage { Self.bytes($0) }, [8])
        XCTAssertNil(receiver.error)
    }

    /// A receive error is `.receive`, the body is not called, and it is sticky.
    func testReceiveErrorIsNotTheBodys() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + Array(frame([2, 2, 2]).prefix(9)))
        peer.shutdownWrite()
        var calls = 0
        let body = { (span: RawSpan) throws(Rejected) -> [UInt8] in
            calls += 1
            return Self.bytes(span)
        }
        XCTAssertEqual(try receiver.withNextMessage(body), [1])
        for _ in 0..<2 {
            do {
                _ = try receiver.withNextMessage(body)
                XCTFail("the frame was cut short")
            } catch .receive(let error) {
                XCTAssertEqual(error, .truncatedFrame(expected: 11, received: 9))
            } catch .body(let rejected) {
                XCTFail("unexpected body error \(rejected)")
            }
        }
        XCTAssertEqual(calls, 1)
        // The non-throwing form throws the TobyError itself.
        XCTAssertThrowsError(try receiver.withNextMessage { $0.byteCount }) { error in
            XCTAssertEqual(error as? TobyError, .truncatedFrame(expected: 11, received: 9))
        }
    }

    func testBodyFailurePrintsItsError() {
        let receive = TobyReceiver.BodyFailure<Rejected>.receive(.endOfStream)
        XCTAssertEqual("\(receive)", TobyError.endOfStream.description)
        XCTAssertEqual("\(TobyReceiver.BodyFailure<Rejected>.body(Rejected(firstByte: 1)))", "Rejected(firstByte: 1)")
    }
}
#endif
