import XCTest

@testable import TobyTCP

/// The decoder over a real socket, fed exact bytes by a raw peer.
final class ReceiverEdgeCaseTests: XCTestCase {
    /// A stream of frames, including empty ones, cut into two writes at every
    /// byte boundary. Before the second write, `tryReceive` must return only
    /// the frames that are complete, and never anything partial.
    func testFramesSplitAtEveryByteBoundary() throws {
        let payloads: [[UInt8]] = [Array("toby".utf8), [], [0xff], pattern(40, seed: 1), []]
        let stream = payloads.flatMap { frame($0) }
        for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
            let wire = payloads.flatMap { frame($0, order) }
            XCTAssertEqual(wire.count, stream.count)
            for split in 0...wire.count {
                let (messenger, peer) = try makePair(try TobyConfiguration(byteOrder: order))
                let receiver = try messenger.start()
                peer.write(Array(wire[0..<split]))
                var got: [[UInt8]] = []
                // Frames entirely inside the first part are available now.
                let completeBefore = Self.completeFrames(payloads, within: split)
                while let message = try receiver.tryReceive() { got.append(message) }
                XCTAssertEqual(got.count, completeBefore, "split \(split)")
                peer.write(Array(wire[split...]))
                peer.shutdownWrite()
                while let message = try receiver.receive() { got.append(message) }
                XCTAssertEqual(got, payloads, "split \(split) \(order)")
            }
        }
    }

    static func completeFrames(_ payloads: [[UInt8]], within bytes: Int) -> Int {
        var end = 0
        var count = 0
        for payload in payloads {
            end += 8 + payload.count
            if end <= bytes { count += 1 } else { break }
        }
        return count
    }

    func testByteAtATime() throws {
        let payloads = (0..<20).map { pattern($0 * 3, seed: UInt64($0)) }
        let (messenger, peer) = try makePair(try TobyConfiguration(ringCapacity: 32))
        let receiver = try messenger.start()
        var got: [[UInt8]] = []
        for byte in payloads.flatMap({ frame($0) }) {
            peer.write([byte])
            while let message = try receiver.tryReceive() { got.append(message) }
        }
        XCTAssertEqual(got, payloads)
    }

    func testManyFramesInOneRead() throws {
        let payloads = (0..<1000).map { pattern($0 % 50, seed: UInt64($0)) }
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(payloads.flatMap { frame($0) })
        peer.shutdownWrite()
        XCTAssertEqual(Array(receiver), payloads)
        XCTAssertNil(receiver.error)
    }

    func testFramesThatWrapAndExceedTheRing() throws {
        // A 64-byte ring: most of these frames wrap its end, some are larger
        // than it and are read straight into their own storage.
        var rng = SplitMix64(state: 7)
        let payloads = (0..<500).map { i in pattern(Int(rng.next() % 200), seed: UInt64(i)) }
        let (messenger, peer) = try makePair(try TobyConfiguration(ringCapacity: 64))
        let receiver = try messenger.start()
        let wire = payloads.flatMap { frame($0) }
        // Write in odd-sized chunks so boundaries fall everywhere.
        var offset = 0
        var got: [[UInt8]] = []
        while offset < wire.count {
            let end = min(wire.count, offset + 1 + Int(rng.next() % 97))
            peer.write(Array(wire[offset..<end]))
            offset = end
            while let message = try receiver.tryReceive() { got.append(message) }
        }
        peer.shutdownWrite()
        while let message = try receiver.receive() { got.append(message) }
        XCTAssertEqual(got, payloads)
    }

    func testBorrowingReceiveLendsWrappedAndLargeFramesWhole() throws {
        var rng = SplitMix64(state: 9)
        let payloads = (0..<300).map { i in pattern(Int(rng.next() % 150), seed: UInt64(i)) }
        let (messenger, peer) = try makePair(try TobyConfiguration(ringCapacity: 64))
        let receiver = try messenger.start()
        let writer = Thread {
            peer.write(payloads.flatMap { frame($0) })
            peer.shutdownWrite()
        }
        writer.start()
        var got: [[UInt8]] = []
        while let message = try receiver.receive({ Array($0) }) { got.append(message) }
        XCTAssertEqual(got, payloads)
    }

    func testZeroLengthMessages() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        try client.send([UInt8]())
        try client.send("")
        try client.send(contentsOf: [[], [1], []])
        try client.close()
        XCTAssertEqual(Array(receiver), [[], [], [], [1], []])
    }

    func testPrefixOverTheLimitAfterGoodFrames() throws {
        for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
            let limit = 1000
            let (messenger, peer) = try makePair(try TobyConfiguration(byteOrder: order, maxFrameLength: limit))
            let receiver = try messenger.start()
            let atLimit = pattern(limit, seed: 3)
            peer.write(
                frame([1, 2, 3], order) + frame(atLimit, order) + TobyProtocol.prefix(length: UInt64(limit + 1), byteOrder: order)
            )
            XCTAssertEqual(try receiver.receive(), [1, 2, 3])
            XCTAssertEqual(try receiver.receive(), atLimit)
            let expected = TobyError.frameTooLarge(
                length: UInt64(limit + 1), limit: UInt64(limit),
                prefix: TobyProtocol.prefix(length: UInt64(limit + 1), byteOrder: order))
            XCTAssertThrowsError(try receiver.receive()) { XCTAssertEqual($0 as? TobyError, expected) }
            // Sticky, and the connection was shut down: the peer sees the end.
            XCTAssertThrowsError(try receiver.receive()) { XCTAssertEqual($0 as? TobyError, expected) }
            XCTAssertEqual(receiver.error, expected)
            XCTAssertEqual(peer.read(1), [])
        }
    }

    func testHugePrefixesAreRefusedWithoutAllocating() throws {
        let before = peakResidentBytes()
        for length in [UInt64(1) << 63, UInt64.max, UInt64(64 << 20) + 1] {
            for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
                let (messenger, peer) = try makePair(try TobyConfiguration(byteOrder: order))
                let receiver = try messenger.start()
                peer.write(TobyProtocol.prefix(length: length, byteOrder: order) + [1, 2, 3])
                XCTAssertThrowsError(try receiver.receive()) { error in
                    guard case TobyError.frameTooLarge(let got, let limit, _) = error else {
                        return XCTFail("\(error)")
                    }
                    XCTAssertEqual(got, length)
                    XCTAssertEqual(limit, 64 << 20)
                }
            }
        }
        XCTAssertLessThan(peakResidentBytes() - before, 32 << 20, "a refused frame must not be allocated")
    }

    func testClaimedLengthIsNotAllocatedUntilBytesArrive() throws {
        // With the limit at Int.max a peer may announce 2^62 bytes; memory
        // must follow the bytes actually received, not the claim.
        let (messenger, peer) = try makePair(try TobyConfiguration(maxFrameLength: Int.max))
        let receiver = try messenger.start()
        let before = peakResidentBytes()
        peer.write(TobyProtocol.prefix(length: 1 << 62) + pattern(100_000, seed: 5))
        peer.shutdownWrite()
        XCTAssertThrowsError(try receiver.receive()) { error in
            XCTAssertEqual(error as? TobyError, .truncatedFrame(expected: 8 + (1 << 62), received: 8 + 100_000))
        }
        XCTAssertLessThan(peakResidentBytes() - before, 16 << 20)
    }

    func testPeerClosingMidPrefix() throws {
        for cut in 1..<8 {
            let (messenger, peer) = try makePair()
            let receiver = try messenger.start()
            peer.write(frame([9, 9]) + Array(TobyProtocol.prefix(length: 5).prefix(cut)))
            peer.shutdownWrite()
            XCTAssertEqual(try receiver.receive(), [9, 9])
            XCTAssertThrowsError(try receiver.receive()) { error in
                XCTAssertEqual(error as? TobyError, .truncatedFrame(expected: 8, received: UInt64(cut)))
                XCTAssertEqual((error as? TobyError)?.missingBytes, UInt64(8 - cut))
            }
        }
    }

    func testPeerClosingMidPayload() throws {
        for ring in [16, 64 << 10] {
            let payload = pattern(1000, seed: 11)
            let (messenger, peer) = try makePair(try TobyConfiguration(ringCapacity: ring))
            let receiver = try messenger.start()
            peer.write(frame([1]) + Array(frame(payload).prefix(8 + 600)))
            peer.shutdownWrite()
            XCTAssertEqual(try receiver.receive(), [1])
            XCTAssertThrowsError(try receiver.receive()) { error in
                XCTAssertEqual(error as? TobyError, .truncatedFrame(expected: 1008, received: 608), "ring \(ring)")
            }
        }
    }

    func testCleanEndAtFrameBoundary() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]))
        peer.shutdownWrite()
        XCTAssertEqual(try receiver.receive(), [1])
        XCTAssertNil(try receiver.receive())
        XCTAssertNil(try receiver.receive())
        XCTAssertThrowsError(try receiver.tryReceive()) { XCTAssertEqual($0 as? TobyError, .endOfStream) }
        XCTAssertNil(receiver.error)
    }

    func testSixtyFourMebibyteMessage() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        var big = [UInt8](repeating: 0, count: 64 << 20)
        for i in stride(from: 0, to: big.count, by: 4096) { big[i] = UInt8(truncatingIfNeeded: i >> 12) }
        big[big.count - 1] = 0xab
        let payload = big
        let sender = Thread {
            try! client.send(payload)
            try! client.send([7])
            try! client.close()
        }
        sender.start()
        let got = try XCTUnwrap(try receiver.receive())
        XCTAssertEqual(got.count, big.count)
        XCTAssertTrue(got == big)
        XCTAssertEqual(try receiver.receive(), [7])
        XCTAssertNil(try receiver.receive())
    }

    func testSendingOverTheLimitThrowsBeforeAnyByte() throws {
        let (messenger, peer) = try makePair(try TobyConfiguration(maxFrameLength: 10))
        XCTAssertThrowsError(try messenger.send(pattern(11, seed: 1))) { error in
            XCTAssertEqual(error as? TobyError, .frameTooLarge(length: 11, limit: 10, prefix: []))
        }
        XCTAssertThrowsError(try messenger.send(contentsOf: [[1], pattern(11, seed: 1)]))
        try messenger.send(pattern(10, seed: 2))
        try messenger.close()
        // Only the message within the limit reached the wire.
        XCTAssertEqual(peer.read(100), frame(pattern(10, seed: 2)))
    }
}
