import Foundation
import XCTest

@testable import TobyTCP

/// Each way of taking messages: blocking, timed, non-blocking, borrowing,
/// Sequence and AsyncSequence.
final class ReceiveStyleTests: XCTestCase {
    func testTryReceiveReturnsNilUntilAWholeMessageArrives() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        XCTAssertNil(try receiver.tryReceive())
        peer.write(Array(frame([1, 2, 3]).prefix(9)))
        XCTAssertNil(try receiver.tryReceive())
        peer.write(Array(frame([1, 2, 3]).suffix(2)))
        XCTAssertEqual(try receiver.tryReceive(), [1, 2, 3])
        XCTAssertNil(try receiver.tryReceive())
    }

    func testReceiveTimeoutKeepsTheReceiverUsable() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        let start = monotonicNanoseconds()
        XCTAssertThrowsError(try receiver.receive(timeout: .milliseconds(50))) { error in
            XCTAssertEqual(error as? TobyError, .timedOut(.milliseconds(50)))
        }
        XCTAssertGreaterThanOrEqual(monotonicNanoseconds() - start, 50_000_000)
        // A partial frame survives a timeout.
        peer.write(Array(frame([5, 6]).prefix(4)))
        XCTAssertThrowsError(try receiver.receive(timeout: .milliseconds(10)))
        peer.write(Array(frame([5, 6]).dropFirst(4)))
        XCTAssertEqual(try receiver.receive(timeout: .seconds(10)), [5, 6])
        XCTAssertNil(receiver.error)
    }

    func testConfiguredReadTimeoutEndsAnIdlePeerWait() throws {
        let (messenger, _peer) = try makePair(try TobyConfiguration(readTimeout: .milliseconds(30)))
        _ = _peer
        let receiver = try messenger.start()
        XCTAssertThrowsError(try receiver.receive()) { error in
            XCTAssertEqual(error as? TobyError, .timedOut(.milliseconds(30)))
        }
    }

    func testBlockingSequenceEndsAtEndOfStreamAndReportsErrors() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]) + Array(frame([3, 3, 3]).prefix(9)))
        peer.shutdownWrite()
        XCTAssertEqual(Array(receiver), [[1], [2]])
        XCTAssertEqual(receiver.error, .truncatedFrame(expected: 11, received: 9))
        XCTAssertThrowsError(try receiver.receive())
    }

    func testAsyncSequenceDeliversEverythingThenEnds() async throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let payloads = (0..<5_000).map { pattern($0 % 100, seed: UInt64($0)) }
        let sender = Thread {
            for payload in payloads { try! client.send(payload) }
            try! client.close()
        }
        sender.start()
        var got: [[UInt8]] = []
        for try await message in receiver { got.append(message) }
        XCTAssertEqual(got, payloads)
    }

    func testAsyncSequenceThrowsAfterDeliveringCompleteMessages() async throws {
        let (messenger, peer) = try makePair(try TobyConfiguration(maxFrameLength: 100))
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]) + TobyProtocol.prefix(length: 101))
        var got: [[UInt8]] = []
        do {
            for try await message in receiver { got.append(message) }
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error, .frameTooLarge(length: 101, limit: 100, prefix: TobyProtocol.prefix(length: 101)))
        }
        XCTAssertEqual(got, [[1], [2]])
    }

    func testAsyncReceiveWaitsWithoutBlockingThePool() async throws {
        // Many more idle async receivers than pool threads: if any of them
        // blocked a thread, the message to the last one would never arrive.
        var pairs: [(TobyMessenger, RawPeer)] = []
        for _ in 0..<64 { pairs.append(try makePair()) }
        let receivers = try pairs.map { try $0.0.start() }
        try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            for receiver in receivers {
                group.addTask { try await receiver.receiveAsync() }
            }
            for (index, pair) in pairs.enumerated() { pair.1.write(frame([UInt8(index)])) }
            var seen = Set<UInt8>()
            for try await message in group { seen.insert(try XCTUnwrap(message).first!) }
            XCTAssertEqual(seen.count, 64)
        }
    }

    func testAsyncReadTimeout() async throws {
        let (messenger, peer) = try makePair(try TobyConfiguration(readTimeout: .milliseconds(40)))
        let receiver = try messenger.start()
        do {
            _ = try await receiver.receiveAsync()
            XCTFail("expected a timeout")
        } catch {
            XCTAssertEqual(error, .timedOut(.milliseconds(40)))
        }
        peer.write(frame([8]))
        let message = try await receiver.receiveAsync()
        XCTAssertEqual(message, [8])
    }

    func testAsyncCancellationEndsWithNilAndLosesNothing() async throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        let task = Task { try await receiver.receiveAsync() }
        task.cancel()
        let result = try await task.value
        XCTAssertNil(result)
        peer.write(frame([4]))
        let message = try await receiver.receiveAsync()
        XCTAssertEqual(message, [4])
    }

    func testReceiverCloseWakesABlockedReceive() throws {
        let (messenger, _peer) = try makePair()
        _ = _peer
        let receiver = try messenger.start()
        let done = DispatchSemaphore(value: 0)
        let box = MessageBox()
        let thread = Thread {
            box.value = try? receiver.receive()
            done.signal()
        }
        thread.start()
        receiver.close()
        done.wait()
        XCTAssertEqual(box.value, .some(nil))
    }

    func testSendVariants() throws {
        let (messenger, peer) = try makePair()
        let receiver = try TobyMessenger(socket: dup(peer.fd)).start()
        try messenger.send([1, 2])
        try messenger.send([0, 1, 2, 3][1...2])
        try [UInt8]([3, 4]).withUnsafeBytes { raw in try messenger.send(raw) }
        try messenger.send("é")
        try messenger.send(Data([5, 6]))
        try messenger.send(contentsOf: [[7], [8, 9]])
        try messenger.send(AnySequenceCollection([10, 11]))
        try messenger.flush()
        var got: [[UInt8]] = []
        for _ in 0..<8 { got.append(try XCTUnwrap(try receiver.receive())) }
        XCTAssertEqual(got, [[1, 2], [1, 2], [3, 4], [0xc3, 0xa9], [5, 6], [7], [8, 9], [10, 11]])
    }
}

final class MessageBox: @unchecked Sendable {
    var value: [UInt8]??
}

/// A collection without contiguous storage, to exercise the copying path.
struct AnySequenceCollection: Collection {
    let base: [UInt8]
    init(_ base: [UInt8]) { self.base = base }
    var startIndex: Int { base.startIndex }
    var endIndex: Int { base.endIndex }
    subscript(index: Int) -> UInt8 { base[index] }
    func index(after i: Int) -> Int { i + 1 }
}

final class ReceiveAvailableTests: XCTestCase {
    func testBlockingBatchTakesEverythingBufferedInOrder() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write((0..<10).flatMap { frame([UInt8($0)]) })
        XCTAssertEqual(try receiver.receiveAvailable(maxCount: 4), [[0], [1], [2], [3]])
        XCTAssertEqual(try receiver.receiveAvailable(), (4..<10).map { [UInt8($0)] })
        peer.write(frame([42]) + TobyProtocol.prefix(length: 1 << 62))
        XCTAssertEqual(try receiver.receiveAvailable(), [[42]], "messages before an error come first")
        XCTAssertThrowsError(try receiver.receiveAvailable())
    }

    func testAsyncBatchEndsWithEmptyArray() async throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]))
        peer.shutdownWrite()
        let first = try await receiver.receiveAvailable()
        XCTAssertEqual(first, [[1], [2]])
        let end = try await receiver.receiveAvailable()
        XCTAssertEqual(end, [])
    }

    func testPipelinedEchoWithBatches() async throws {
        let (client, server) = try makeTCPPair()
        let serverReceiver = try server.start()
        let clientReceiver = try client.start()
        let echo = Task {
            while case let batch = try await serverReceiver.receiveAvailable(), !batch.isEmpty {
                try server.send(contentsOf: batch)
            }
            try server.close()
        }
        let payloads = (0..<2000).map { pattern($0 % 90, seed: UInt64($0)) }
        try client.send(contentsOf: payloads)
        try client.close()
        var got: [[UInt8]] = []
        while case let batch = try await clientReceiver.receiveAvailable(), !batch.isEmpty { got += batch }
        try await echo.value
        XCTAssertEqual(got, payloads)
    }
}
