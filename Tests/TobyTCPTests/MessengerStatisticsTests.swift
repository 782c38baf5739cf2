import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// `TobyMessenger.statistics`: the blocking client's own figures.
final class MessengerStatisticsTests: XCTestCase {
    func testEveryMessageAndByteIsCountedBothWays() throws {
        let (client, server) = try makeTCPPair()
        let clientReceiver = try client.start()
        let serverReceiver = try server.start()
        let opened = client.statistics.openedAt
        XCTAssertLessThanOrEqual(opened, .now)
        XCTAssertEqual(client.statistics.messagesSent, 0)
        // Small frames, frames that fill the ring, frames read straight into
        // their own storage; one at a time and in batches.
        let sizes = [0, 1, 17, 4096, 65_528, 65_529, 200_000, 1 << 20, 3]
        for (index, size) in sizes.enumerated() { try client.send(pattern(size, seed: UInt64(index))) }
        try client.send(contentsOf: (0..<100).map { pattern($0, seed: 1000 + UInt64($0)) })
        try client.flush()
        var received = 0
        var total = 0
        for _ in 0..<(sizes.count + 100) {
            let message = try XCTUnwrap(try serverReceiver.receive())
            received += 1
            total += 8 + message.count
            try server.send(message)
        }
        let wire = sizes.reduce(0) { $0 + 8 + $1 } + (0..<100).reduce(0) { $0 + 8 + $1 }
        XCTAssertEqual(total, wire)
        for _ in 0..<(sizes.count + 100) { _ = try XCTUnwrap(try clientReceiver.receive()) }

        let sent = client.statistics
        XCTAssertEqual(sent.messagesSent, sizes.count + 100)
        XCTAssertEqual(sent.bytesSent, wire)
        XCTAssertEqual(sent.queuedBytes, 0, "flushed")
        XCTAssertEqual(sent.messagesReceived, sizes.count + 100, "the echoes")
        XCTAssertEqual(sent.bytesReceived, wire)
        XCTAssertEqual(sent.openedAt, opened)
        let got = server.statistics
        XCTAssertEqual(got.messagesReceived, received)
        XCTAssertEqual(got.bytesReceived, wire, "every byte read off the socket, once")
        XCTAssertEqual(got.messagesSent, received)
        try client.close()
        try server.close()
    }

    func testThreadsSendingAtOnceAreAllCounted() throws {
        let (client, server) = try makeTCPPair()
        let serverReceiver = try server.start()
        let threads = 4
        let perThread = 5_000
        let reader = Thread {
            for _ in 0..<(threads * perThread) { _ = try? serverReceiver.receive({ _ in }) }
        }
        reader.start()
        onThreads(threads) { thread in
            for index in 0..<perThread { try? client.send(pattern(index % 50, seed: UInt64(thread))) }
        }
        try client.flush()
        let figures = client.statistics
        XCTAssertEqual(figures.messagesSent, threads * perThread, "no count lost between threads")
        XCTAssertEqual(figures.bytesSent, threads * (0..<perThread).reduce(0) { $0 + 8 + $1 % 50 })
        try client.close()
        XCTAssertTrue(ServerEvents().wait { server.statistics.messagesReceived == threads * perThread })
    }

    func testTheFiguresCanBeReadWhileAReceiveBlocks() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try client.start()
        let blocked = Thread { _ = try? receiver.receive() }
        blocked.start()
        XCTAssertTrue(ServerEvents().wait { client.socket.receiverParked.load(ordering: .relaxed) }, "parked in recvmsg")
        // Would hang here if reading took the receive lock.
        XCTAssertEqual(client.statistics.messagesReceived, 0)
        try server.send("wake up")
        XCTAssertTrue(ServerEvents().wait { client.statistics.messagesReceived == 1 })
        XCTAssertEqual(client.statistics.bytesReceived, 8 + 7)
        try server.close()
    }
}
