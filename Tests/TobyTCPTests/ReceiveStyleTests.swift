import CTobyFrame
import Foundation
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Each way of taking messages from a receiver: blocking, timed,
/// non-blocking, borrowing and Sequence (async receive is
/// TobyAsyncConnection's; see AsyncServerTests).
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
        // The receiver stays usable after the timeout.
        _peer.write(frame([8]))
        XCTAssertEqual(try receiver.receive(), [8])
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

    func testBlockingSequenceOverTCPDeliversEverythingThenEnds() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let payloads = (0..<5_000).map { pattern($0 % 100, seed: UInt64($0)) }
        let sender = Thread {
            for payload in payloads { try! client.send(payload) }
            try! client.close()
        }
        sender.start()
        var got: [[UInt8]] = []
        for message in receiver { got.append(message) }
        XCTAssertEqual(got, payloads)
        XCTAssertNil(receiver.error, "a clean end")
    }

    /// The receiver is a `Sequence` only: in async code `map`, `prefix` and
    /// `first(where:)` are the blocking `Sequence` ones, not ambiguous
    /// (async iteration is ``TobyAsyncConnection``'s).
    func testReceiverIsASequenceOnly() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        XCTAssertFalse((receiver as Any) is any AsyncSequence, "TobyReceiver must not be an AsyncSequence")
        peer.write(frame([1]) + frame([2, 2]) + frame([3, 3, 3]))
        XCTAssertEqual(Array(receiver.prefix(2)), [[1], [2, 2]])
        peer.shutdownWrite()
        XCTAssertEqual(receiver.map(\.count), [3])
    }

    /// The async connection's `messages` ends with the error only after
    /// every complete message before it (what `for try await message in
    /// receiver` used to prove for the receiver).
    func testAsyncMessagesThrowAfterDeliveringCompleteMessages() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let client = try await TobyAsyncConnection.connect(
            host: "127.0.0.1", port: listener.port, configuration: try TobyConfiguration(maxFrameLength: 100), group: group)
        let peer = try listener.accept()
        let bytes = frame([1]) + frame([2]) + TobyProtocol.prefix(length: 101)
        XCTAssertEqual(bytes.withUnsafeBytes { send(peer.socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, bytes.count)
        var got: [[UInt8]] = []
        do {
            for try await message in client.messages { got.append(Array(message)) }
            XCTFail("expected an error")
        } catch let error as TobyError {
            XCTAssertEqual(error, .frameTooLarge(length: 101, limit: 100, prefix: TobyProtocol.prefix(length: 101)))
        }
        XCTAssertEqual(got, [[1], [2]])
        client.abort()
    }

    /// Many more idle async receives than pool threads: if any of them
    /// blocked a thread, the messages to the others would never arrive (a
    /// watchdog aborts the connections after 30 s, so that fails, not hangs).
    func testAsyncReceiveWaitsWithoutBlockingThePool() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        var clients: [TobyAsyncConnection] = []
        var peers: [TobyMessenger] = []
        for _ in 0..<64 {
            clients.append(try await TobyAsyncConnection.connect(host: "127.0.0.1", port: listener.port, group: group))
            peers.append(try listener.accept())
        }
        let done = DispatchSemaphore(value: 0)
        let waiting = clients
        let watchdog = Thread {
            if done.wait(timeout: .now() + 30) == .timedOut { waiting.forEach { $0.abort() } }
        }
        watchdog.start()
        defer { done.signal() }
        try await withThrowingTaskGroup(of: [UInt8]?.self) { tasks in
            for client in clients {
                tasks.addTask {
                    var iterator = client.messages.makeAsyncIterator()
                    return try await iterator.next().map { Array($0) }
                }
            }
            for (index, peer) in peers.enumerated() { try peer.send([UInt8(index)]) }
            var seen = Set<UInt8>()
            for try await message in tasks { seen.insert(try XCTUnwrap(message).first!) }
            XCTAssertEqual(seen.count, 64)
        }
        clients.forEach { $0.abort() }
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

    func testBlockingBatchEndsWithEmptyArray() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]))
        peer.shutdownWrite()
        XCTAssertEqual(try receiver.receiveAvailable(), [[1], [2]])
        XCTAssertEqual(try receiver.receiveAvailable(), [])
        XCTAssertEqual(try receiver.receiveAvailable(), [], "the end stays the end")
        XCTAssertNil(receiver.error)
    }

    func testPipelinedEchoWithBatches() throws {
        let (client, server) = try makeTCPPair()
        let serverReceiver = try server.start()
        let clientReceiver = try client.start()
        let echoed = Mailbox<String>()
        Thread {
            do {
                while case let batch = try serverReceiver.receiveAvailable(), !batch.isEmpty {
                    try server.send(contentsOf: batch)
                }
                try server.close()
                echoed.put("clean end")
            } catch {
                echoed.put("\(error)")
            }
        }.start()
        let payloads = (0..<2000).map { pattern($0 % 90, seed: UInt64($0)) }
        Thread {
            try! client.send(contentsOf: payloads)
            try! client.close()
        }.start()
        var got: [[UInt8]] = []
        while case let batch = try clientReceiver.receiveAvailable(), !batch.isEmpty { got += batch }
        XCTAssertEqual(echoed.take(), "clean end")
        XCTAssertEqual(got, payloads)
    }
}
