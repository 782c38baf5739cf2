import Foundation
import XCTest

@testable import TobyTCP
import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// Hostile and broken peers: each test asserts what the user sees, and that
/// other connections are unharmed.
final class FaultTests: XCTestCase {
    func testOverLimitPrefixesCostOnlyTheirConnection() throws {
        let limit = 4096
        let config = try TobyConfiguration(maxFrameLength: limit)
        let (good, goodPeer) = try makePair(config)
        let goodReceiver = try good.start()
        for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
            for length in [UInt64(1) << 63, UInt64.max, UInt64(limit) + 1] {
                let (bad, badPeer) = try makePair(try TobyConfiguration(byteOrder: order, maxFrameLength: limit))
                let badReceiver = try bad.start()
                badPeer.write(frame([1], order) + TobyProtocol.prefix(length: length, byteOrder: order))
                XCTAssertEqual(try badReceiver.receive(), [1])
                XCTAssertThrowsError(try badReceiver.receive()) { error in
                    XCTAssertEqual(
                        error as? TobyError,
                        .frameTooLarge(
                            length: length, limit: UInt64(limit), prefix: TobyProtocol.prefix(length: length, byteOrder: order)))
                }
                // The bad connection is closed both ways: its peer reads the end.
                XCTAssertEqual(badPeer.read(1), [])
                // The good one still works.
                goodPeer.write(frame([UInt8(truncatingIfNeeded: length)]))
                XCTAssertEqual(try goodReceiver.receive(), [UInt8(truncatingIfNeeded: length)])
            }
        }
    }

    /// A peer that drips a large frame one byte at a time does not hold up
    /// other connections, and a read timeout ends it with a clear error.
    func testSlowLorisDoesNotHoldUpOthersAndTimesOut() throws {
        let config = try TobyConfiguration(readTimeout: .milliseconds(300))
        let (slow, slowPeer) = try makePair(config)
        let (fast, fastPeer) = try makePair(config)
        let slowReceiver = try slow.start()
        let fastReceiver = try fast.start()
        let stop = Counter()
        let dripper = Thread {
            let bytes = frame(pattern(100_000, seed: 1))
            for byte in bytes {
                if stop.value > 0 { return }
                slowPeer.write([byte])
                usleep(2_000)  // the attack itself: one byte every 2 ms
            }
        }
        dripper.start()
        defer { stop.add(1) }
        let slowOutcome = Mailbox<Result<[UInt8]?, TobyError>>()
        Thread {
            slowOutcome.put(Result { () throws(TobyError) in try slowReceiver.receive() })
        }.start()
        // Meanwhile the other connection moves 1,000 messages.
        let sender = Thread {
            for i in 0..<1000 { fastPeer.write(frame([UInt8(i % 256)])) }
        }
        sender.start()
        for i in 0..<1000 {
            XCTAssertEqual(try fastReceiver.receive(), [UInt8(i % 256)])
        }
        switch slowOutcome.take() {
        case .failure(let error)?:
            XCTAssertEqual(error, .timedOut(.milliseconds(300)))
            XCTAssertTrue(error.description.contains("no message arrived within"), error.description)
        case let other:
            XCTFail("the slow peer should have timed out, got \(String(describing: other))")
        }
    }

    func testConnectionResetMidFrameIsReportedAfterCompleteMessages() throws {
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let raw = try RawClient(port: listener.port)
        let server = try listener.accept()
        let receiver = try server.start()
        raw.peer.write(frame([1]) + frame([2]) + Array(frame(pattern(500, seed: 3)).prefix(100)))
        // Everything sent before the reset is in the server's socket buffer.
        XCTAssertEqual(try receiver.receive(), [1])
        raw.peer.reset()
        XCTAssertEqual(try receiver.receive(), [2])
        XCTAssertThrowsError(try receiver.receive()) { error in
            XCTAssertEqual(error as? TobyError, .system(operation: "recvmsg", errno: ECONNRESET))
        }
    }

    func testSendToAGonePeerIsAnErrorNotSIGPIPE() throws {
        // Make sure SIGPIPE would kill us if it were raised.
        let previous = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, previous) }
        let (messenger, peer) = try makePair()
        peer.closeNow()
        var failure: TobyError?
        for _ in 0..<100 {
            do { try messenger.send(pattern(1000, seed: 1)) } catch { failure = error; break }
        }
        XCTAssertEqual(failure, .system(operation: "sendmsg", errno: EPIPE))
        // Sticky: later sends and close report it too.
        XCTAssertThrowsError(try messenger.send([1])) { XCTAssertEqual($0 as? TobyError, failure) }
        XCTAssertThrowsError(try messenger.close()) { XCTAssertEqual($0 as? TobyError, failure) }
    }

    /// Signals that interrupt blocking reads and writes (EINTR, or a short
    /// write) lose no byte.
    func testSignalsInterruptingReadsAndWritesLoseNothing() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0  // no SA_RESTART: blocked calls really return EINTR
        sigemptyset(&action.sa_mask)
        var previous = sigaction()
        sigaction(SIGUSR1, &action, &previous)
        defer { sigaction(SIGUSR1, &previous, nil) }

        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let payloads = (0..<200).map { pattern(($0 * 7919) % 300_000, seed: UInt64($0)) }
        let threads = ThreadIDs()
        let done = Counter()
        let sender = Thread {
            threads.set(sender: pthread_self())
            for payload in payloads { try! client.send(payload) }
            try! client.close()
            done.add(1)
        }
        sender.start()
        threads.set(receiver: pthread_self())
        let signallerDone = DispatchSemaphore(value: 0)
        let signaller = Thread {
            // Keep interrupting both threads until the transfer is over.
            while done.value == 0 {
                if let s = threads.sender { pthread_kill(s, SIGUSR1) }
                if let r = threads.receiver { pthread_kill(r, SIGUSR1) }
                usleep(200)  // pacing of the interruptions, not synchronisation
            }
            signallerDone.signal()
        }
        signaller.start()
        var got: [[UInt8]] = []
        while let message = try receiver.receive() { got.append(message) }
        done.add(1)
        signallerDone.wait()  // before the handler is restored
        XCTAssertEqual(got.count, payloads.count)
        XCTAssertTrue(got == payloads)
    }

    /// 1,000 connections x 100 messages through one listener, all open at
    /// once, from client threads to receivers drained by server threads:
    /// all delivered, and no descriptor leaked afterwards.
    func testThousandConnectionsAndNoDescriptorLeak() throws {
        _ = raiseDescriptorLimit()
        // A small warm-up first, so descriptors that runtimes open once per
        // process (Dispatch's eventfds) are not counted as leaks.
        try exchange(connections: 10, perConnection: 10)
        let before = openFileDescriptorCount()
        try exchange(connections: 1000, perConnection: 100)
        XCTAssertEqual(openFileDescriptorCount(), before, "file descriptors leaked")
    }

    /// The same through the event loops: a `TobyServer.serve` task per
    /// connection, 1,000 `TobyAsyncConnection` clients in a task group, and
    /// once every connection has ended, the descriptors are what they were
    /// before (the group and the server stay up: this counts the connections'
    /// descriptors, each client's and each accepted one).
    func testThousandAsyncConnectionsAndNoDescriptorLeak() async throws {
        _ = raiseDescriptorLimit()
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        let total = Counter()
        let server = try TobyServer.serve(port: 0, group: group) { connection in
            var messages: [[UInt8]] = []
            for try await message in connection.messages { messages.append(Array(message)) }
            total.add(FaultTests.checkedCount(messages))
        }
        defer { server.close() }
        try await asyncExchange(port: server.port, group: group, connections: 10, perConnection: 10)
        XCTAssertTrue(ServerEvents().wait { server.connectionCount == 0 }, "every warm-up connection closed")
        XCTAssertEqual(total.value, 10 * 10)
        let before = openFileDescriptorCount()
        try await asyncExchange(port: server.port, group: group, connections: 1000, perConnection: 100)
        XCTAssertTrue(ServerEvents().wait { server.connectionCount == 0 }, "every server connection closed")
        XCTAssertEqual(total.value, 10 * 10 + 1000 * 100)
        // A closed connection's descriptor goes on its loop's thread: wait
        // (with a deadline) for the last ones.
        XCTAssertTrue(
            ServerEvents().wait { openFileDescriptorCount() == before },
            "file descriptors leaked: \(openFileDescriptorCount()) open, \(before) before")
    }

    /// Checks one connection's messages: two bytes each, the client's tag
    /// and the message's index, in order. Returns how many there were.
    private static func checkedCount(_ messages: some Sequence<[UInt8]>) -> Int {
        var count = 0
        var first: UInt8?
        for message in messages {
            XCTAssertEqual(message.count, 2)
            if first == nil { first = message[0] }
            XCTAssertEqual(message[0], first)
            XCTAssertEqual(Int(message[1]), count)
            count += 1
        }
        return count
    }

    private func exchange(connections: Int, perConnection: Int) throws {
        let listener = try TobyListener(port: 0, backlog: 2048)
        defer { listener.close() }
        let port = listener.port
        let clientThreads = 8
        let clientFailures = Counter()
        let clientsDone = DispatchGroup()
        for t in 0..<clientThreads {
            clientsDone.enter()
            Thread {
                defer { clientsDone.leave() }
                for c in stride(from: t, to: connections, by: clientThreads) {
                    do {
                        let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: port)
                        try messenger.send(contentsOf: (0..<perConnection).map { [UInt8(c % 256), UInt8($0)] })
                        try messenger.close()
                    } catch {
                        clientFailures.add(1)
                    }
                }
            }.start()
        }
        // Every connection is accepted (so all are open at once) before any
        // is read; the receivers are then drained by a few threads.
        // (Taken from a queue, so no thread's closure keeps one alive.)
        let queue = ReceiverQueue()
        for _ in 0..<connections { queue.push(try listener.accept().start()) }
        let total = Counter()
        let errors = Counter()
        onThreads(4) { _ in
            while let receiver = queue.pop() {
                total.add(FaultTests.checkedCount(receiver))
                if receiver.error != nil { errors.add(1) }
            }
        }
        XCTAssertEqual(clientsDone.wait(timeout: .now() + 60), .success, "the clients finished")
        XCTAssertEqual(clientFailures.value, 0)
        XCTAssertEqual(errors.value, 0)
        XCTAssertEqual(total.value, connections * perConnection)
    }

    /// `connections` clients in a task group, each sending its messages,
    /// then closing and reading to the end of the server's stream.
    private func asyncExchange(port: Int, group: TobyEventLoopGroup, connections: Int, perConnection: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for c in 0..<connections {
                tasks.addTask {
                    let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group)
                    try await client.send(contentsOf: (0..<perConnection).map { [UInt8(c % 256), UInt8($0)] })
                    try await client.close()
                    // The server's task ends after the whole stream, and then its end.
                    for try await _ in client.messages { XCTFail("the server sends nothing") }
                }
            }
            try await tasks.waitForAll()
        }
    }

    /// A consumer that stops reading while the peer sends 1 GiB: the peer is
    /// pushed back by TCP and our memory stays within the documented bound.
    func testStalledConsumerPushesBackInsteadOfBuffering() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        let chunk = pattern(1 << 20, seed: 77)
        let accepted = Counter()
        let senderDone = DispatchSemaphore(value: 0)
        let sender = Thread {
            for _ in 0..<1024 {
                try! client.send(chunk)
                accepted.add(1)
            }
            try! client.close()
            senderDone.signal()
        }
        let residentBefore = residentBytes()
        sender.start()
        // Wait until the sender stops making progress: it is blocked by TCP.
        var last = -1
        var stableSince = monotonicNanoseconds()
        while monotonicNanoseconds() - stableSince < 300_000_000 {
            let now = accepted.value
            if now != last { last = now; stableSince = monotonicNanoseconds() }
            usleep(10_000)  // observing a stall needs time; this is not synchronisation
        }
        XCTAssertLessThan(accepted.value, 64, "the sender should be pushed back, not buffered")
        XCTAssertLessThan(residentBytes() - residentBefore, 32 << 20, "unread data must wait in the kernel")
        // Now drain: all 1 GiB arrives intact.
        var count = 0
        while let message = try receiver.receive() {
            XCTAssertEqual(message.count, chunk.count)
            if count % 128 == 0 { XCTAssertTrue(message == chunk) }
            count += 1
        }
        senderDone.wait()
        XCTAssertEqual(count, 1024)
    }
}

/// A plain TCP client socket, for resets.
final class RawClient: @unchecked Sendable {
    let peer: RawPeer

    init(port: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(rc == 0, "connect: \(errno)")
        peer = RawPeer(fd: fd)
    }
}

/// Receivers handed to draining threads, each taken once.
final class ReceiverQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var receivers: [TobyReceiver] = []
    func push(_ receiver: TobyReceiver) { lock.lock(); receivers.append(receiver); lock.unlock() }
    func pop() -> TobyReceiver? { lock.lock(); defer { lock.unlock() }; return receivers.popLast() }
}

final class ThreadIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var _sender: pthread_t?
    private var _receiver: pthread_t?
    func set(sender: pthread_t) { lock.lock(); _sender = sender; lock.unlock() }
    func set(receiver: pthread_t) { lock.lock(); _receiver = receiver; lock.unlock() }
    var sender: pthread_t? { lock.lock(); defer { lock.unlock() }; return _sender }
    var receiver: pthread_t? { lock.lock(); defer { lock.unlock() }; return _receiver }
}
