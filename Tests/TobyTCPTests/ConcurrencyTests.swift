import Foundation
import XCTest

@testable import TobyTCP

final class ConcurrencyTests: XCTestCase {
    /// 8 threads x 10,000 messages of random sizes through one messenger:
    /// every message arrives intact, none interleaved, each thread's order kept.
    func testEightThreadsShareOneMessenger() throws {
        let threads = 8
        let perThread = 10_000
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let senders = Thread {
            onThreads(threads) { thread in
                var rng = SplitMix64(state: UInt64(thread))
                for sequence in 0..<perThread {
                    let size = Int(rng.next() % 300)
                    try! client.send(ConcurrencyTests.message(thread: thread, sequence: sequence, size: size))
                }
            }
            try! client.close()
        }
        senders.start()
        var next = [Int](repeating: 0, count: threads)
        var total = 0
        while let message = try receiver.receive() {
            let (thread, sequence) = try XCTUnwrap(ConcurrencyTests.check(message))
            XCTAssertEqual(sequence, next[thread], "thread \(thread) out of order")
            next[thread] = sequence + 1
            total += 1
        }
        XCTAssertNil(receiver.error)
        XCTAssertEqual(total, threads * perThread)
        XCTAssertEqual(next, [Int](repeating: perThread, count: threads))
    }

    /// Header: thread, sequence (4 bytes each), then a pattern derived from both.
    static func message(thread: Int, sequence: Int, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8 + size)
        withUnsafeBytes(of: UInt32(thread).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: UInt32(sequence).littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
        for i in 0..<size { bytes[8 + i] = UInt8(truncatingIfNeeded: thread &* 31 &+ sequence &* 7 &+ i) }
        return bytes
    }

    /// Returns (thread, sequence) if the message is intact, nil otherwise.
    static func check(_ bytes: [UInt8]) -> (Int, Int)? {
        guard bytes.count >= 8 else { return nil }
        let thread = Int(bytes[0..<4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        let sequence = Int(bytes[4..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        guard thread < 64 else { return nil }
        for i in 0..<(bytes.count - 8) where bytes[8 + i] != UInt8(truncatingIfNeeded: thread &* 31 &+ sequence &* 7 &+ i) {
            return nil
        }
        return (thread, sequence)
    }

    /// close() right after a burst of sends loses nothing: everything that
    /// send() accepted, from every thread, reaches the peer before the end.
    func testCloseAfterConcurrentSendsLosesNothing() throws {
        let (client, server) = try makeTCPPair(try TobyConfiguration(maxQueuedSendBytes: 1 << 16))
        let receiver = try server.start()
        let counter = Counter()
        let senders = Thread {
            onThreads(4) { thread in
                for sequence in 0..<5_000 {
                    do {
                        try client.send(ConcurrencyTests.message(thread: thread, sequence: sequence, size: 100))
                        counter.add(1)
                    } catch {
                        XCTFail("send failed: \(error)")
                    }
                }
            }
            try! client.close()
        }
        senders.start()
        var received = 0
        while let message = try receiver.receive() {
            XCTAssertNotNil(ConcurrencyTests.check(message))
            received += 1
        }
        XCTAssertEqual(received, 20_000)
        XCTAssertEqual(counter.value, 20_000)
    }

    /// A close() racing with senders: every send either throws `.closed` or
    /// was accepted, and every accepted message arrives.
    func testCloseRacingWithSendersNeverLosesAcceptedMessages() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let accepted = Counter()
        let sendersDone = DispatchSemaphore(value: 0)
        let senders = Thread {
            defer { sendersDone.signal() }
            onThreads(3) { thread in
                for sequence in 0..<100_000 {
                    do {
                        try client.send(ConcurrencyTests.message(thread: thread, sequence: sequence, size: 10))
                        accepted.add(1)
                    } catch {
                        XCTAssertEqual(error as? TobyError, .closed)
                        return
                    }
                }
            }
        }
        senders.start()
        // Close once some messages went through.
        XCTAssertNotNil(try receiver.receive())
        try client.close()
        var received = 1
        while try receiver.receive() != nil { received += 1 }
        sendersDone.wait()
        XCTAssertEqual(received, accepted.value)
    }

    /// A one-byte queue bound: every sender that finds a write in progress
    /// waits for the writer or takes the writer role over. Nothing is lost,
    /// nothing reordered.
    func testTinyQueueBoundForcesHandoffsWithoutLoss() throws {
        let (client, server) = try makeTCPPair(try TobyConfiguration(maxQueuedSendBytes: 1))
        let receiver = try server.start()
        let senders = Thread {
            onThreads(6) { thread in
                for sequence in 0..<3_000 {
                    try! client.send(ConcurrencyTests.message(thread: thread, sequence: sequence, size: sequence % 700))
                }
            }
            try! client.close()
        }
        senders.start()
        var next = [Int](repeating: 0, count: 6)
        while let message = try receiver.receive() {
            let (thread, sequence) = try XCTUnwrap(ConcurrencyTests.check(message))
            XCTAssertEqual(sequence, next[thread])
            next[thread] += 1
        }
        XCTAssertEqual(next, [Int](repeating: 3_000, count: 6))
    }

    func testConcurrentBatchesKeepTheirOrder() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let senders = Thread {
            onThreads(4) { thread in
                for batch in 0..<200 {
                    let messages = (0..<25).map { ConcurrencyTests.message(thread: thread, sequence: batch * 25 + $0, size: $0) }
                    try! client.send(contentsOf: messages)
                }
            }
            try! client.close()
        }
        senders.start()
        var next = [Int](repeating: 0, count: 4)
        while let message = try receiver.receive() {
            let (thread, sequence) = try XCTUnwrap(ConcurrencyTests.check(message))
            XCTAssertEqual(sequence, next[thread])
            next[thread] += 1
        }
        XCTAssertEqual(next, [5000, 5000, 5000, 5000])
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ n: Int) { lock.lock(); count += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
