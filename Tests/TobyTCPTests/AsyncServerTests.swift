import CTobyFrame
import Foundation
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` (a state the code under test reaches) until it holds,
/// failing the test after 10 s; the polling interval is no synchronisation.
func eventually(_ condition: () async -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            XCTFail("condition not reached within 10 s", file: file, line: line)
            return
        }
        try await Task.sleep(for: .milliseconds(1))
    }
}

extension TobyAsyncConnection {
    /// Reads loop-only state on the connection's loop.
    func onLoopValue<T: Sendable>(_ body: @Sendable () -> T) async -> T {
        await withTaskExecutorPreference(loop) { body() }
    }
}

/// The async API on the event loops: server tasks, async connect, inbound
/// sequences, sends that suspend, cancellation, single consumer.
final class AsyncServerTests: XCTestCase {
    private func makeGroup(_ threads: Int = 2) throws -> TobyEventLoopGroup {
        let group = try TobyEventLoopGroup(threads: threads)
        addTeardownBlock { group.shutdown() }
        return group
    }

    private func asyncEchoServer(
        group: TobyEventLoopGroup, _ configuration: TobyConfiguration = .default, preferLoop: Bool = true
    ) throws -> TobyServer {
        let server = try TobyServer.serve(port: 0, configuration: configuration, group: group, preferLoopExecutor: preferLoop) {
            connection in
            for try await batch in connection.batches {
                try await connection.send(contentsOf: batch)
            }
        }
        addTeardownBlock { server.close() }
        return server
    }

    func testAsyncEchoWithAndWithoutLoopPreference() async throws {
        let group = try makeGroup()
        for preferLoop in [true, false] {
            let server = try asyncEchoServer(group: group, preferLoop: preferLoop)
            let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
            let payloads = [0, 1, 100, 70_000, 1 << 20, 5].enumerated().map { pattern($0.element, seed: UInt64($0.offset)) }
            try await client.send(contentsOf: payloads)
            var got: [[UInt8]] = []
            for try await message in client.messages {
                got.append(Array(message))
                if got.count == payloads.count { break }
            }
            XCTAssertEqual(got, payloads, "preferLoop \(preferLoop)")
            try await client.close()
            var more = 0
            for try await _ in client.messages { more += 1 }
            XCTAssertEqual(more, 0, "the server ends after the client's end")
            server.close()
        }
    }

    func testTaskRunsOnTheConnectionsLoopThread() async throws {
        let group = try makeGroup(1)
        let server = try TobyServer.serve(port: 0, group: group) { connection in
            let onLoop = (connection.executor as? EventLoop)?.isCurrent ?? false
            for try await message in connection.messages {
                let stillOnLoop = (connection.executor as? EventLoop)?.isCurrent ?? false
                try await connection.send(onLoop && stillOnLoop ? [1] : [0])
                _ = message
            }
        }
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        for _ in 0..<20 {
            try client.send([9])
            XCTAssertEqual(try receiver.receive(), [1], "the task and its resumptions run on the loop thread")
        }
    }

    func testTwoConcurrentConsumersGetAClearError() async throws {
        let group = try makeGroup()
        let server = try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
        defer { server.close() }
        let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
        var first = client.messages.makeAsyncIterator()
        var second = client.batches.makeAsyncIterator()
        do {
            _ = try await second.next()
            XCTFail("the second consumer must not be served")
        } catch let error as TobyError {
            XCTAssertEqual(error, .alreadyReceiving)
        }
        try await client.send([7])
        let message = try await first.next()
        XCTAssertEqual(message.map { Array($0) }, [7], "the first consumer is unaffected")
        try await client.close()
    }

    func testCancellingAWaitingReceiveIsNotTheEndOfStream() async throws {
        let group = try makeGroup()
        let server = try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
        defer { server.close(gracePeriod: .zero) }
        let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
        let waiting = Task {
            for try await _ in client.messages { return "message" }
            return "end of stream"
        }
        try await eventually { await client.onLoopValue { client.isWaitingForInbound } }
        waiting.cancel()
        do {
            let outcome = try await waiting.value
            XCTFail("got \(outcome) instead of a cancellation")
        } catch {
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        // The connection still works, and a new consumer may iterate.
        try await client.send([3])
        var iterator = client.messages.makeAsyncIterator()
        let echoed = try await iterator.next()
        XCTAssertEqual(echoed.map { Array($0) }, [3])
    }

    /// A peer that never reads: sends suspend above the high-water mark
    /// (no thread blocks: an unrelated task still runs at once), a
    /// writeTimeout ends the wait, and cancellation does too.
    func testSendSuspendsAboveHighWaterAndTimesOut() async throws {
        let group = try makeGroup()
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        var configuration = TobyConfiguration()
        configuration.writeTimeout = .milliseconds(300)
        let client = try await TobyAsyncConnection.connect(
            host: "127.0.0.1", port: listener.port, configuration: configuration, group: group)
        let silent = try listener.accept()  // never reads
        _ = silent
        let big = [UInt8](repeating: 1, count: 1 << 20)
        var accepted = 0
        var timedOut = false
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(20) {
            do {
                try await client.send(big)
                accepted += 1
            } catch let error as TobyError {
                XCTAssertEqual(error, .writeTimedOut(.milliseconds(300)))
                XCTAssertTrue(error.description.contains("waited 0.3 seconds for room"), error.description)
                timedOut = true
                break
            }
        }
        XCTAssertTrue(timedOut, "a send waiting for room times out")
        XCTAssertLessThan(accepted, 64, "the queue is bounded: \(accepted) MiB accepted")
        // Meanwhile no thread of the pool is blocked.
        let t0 = ContinuousClock.now
        let ran = await Task.detached { ContinuousClock.now }.value
        XCTAssertLessThan(ran - t0, .milliseconds(100))
        // A send waiting for room is cancelled cleanly.
        let sender = Task { try await client.send(big) }
        try await eventually { await client.onLoopValue { client.core.outputWaiterCount > 0 } }
        sender.cancel()
        do {
            try await sender.value
        } catch {
            XCTAssertTrue(error is CancellationError || (error as? TobyError) == .writeTimedOut(.milliseconds(300)), "\(error)")
        }
        client.abort()
    }

    /// cores + 2 clients send 1 MiB frames to an async echo server and never
    /// read: a fresh client's 1,000 round trips finish, an unrelated task
    /// runs within 100 ms, and the server's memory stays bounded.
    func testNonReadingClientsDoNotStallTheAsyncServer() async throws {
        let group = try makeGroup()
        let server = try asyncEchoServer(group: group)
        let hogCount = TobyEventLoopGroup.coreCount + 2
        let hogs = (0..<hogCount).map { _ in try! connectRaw(port: server.port) }
        let baseline = residentBytes()
        let stop = ServerEvents()
        let exited = ServerEvents()
        let big = frame(pattern(1 << 20, seed: 6))
        for hog in hogs {
            Thread {
                defer { exited.close(nil) }
                var tv = timeval(tv_sec: 0, tv_usec: 100_000)
                setsockopt(hog.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                while stop.closed.isEmpty {
                    var offset = 0
                    while offset < big.count && stop.closed.isEmpty {
                        let n = big[offset...].withUnsafeBytes { send(hog.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        if n > 0 { offset += n } else if errno != EAGAIN && errno != EINTR { return }
                    }
                }
            }.start()
        }
        let fresh = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
        var replies = fresh.messages.makeAsyncIterator()
        let start = ContinuousClock.now
        for i in 0..<1000 {
            try await fresh.send([UInt8(i & 0xff)])
            let reply = try await replies.next()
            XCTAssertEqual(reply.map { Array($0) }, [UInt8(i & 0xff)])
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(20), "1,000 round trips beside the hogs")
        let t0 = ContinuousClock.now
        let ran = await Task.detached { ContinuousClock.now }.value
        XCTAssertLessThan(ran - t0, .milliseconds(100), "an unrelated task ran at once")
        let grown = residentBytes() - baseline
        stop.close(nil)
        for hog in hogs { shutdown(hog.fd, Int32(SHUT_RDWR)) }
        XCTAssertTrue(exited.waitForClosures(hogs.count))
        hogs.forEach { $0.reset() }
        // Per hog: the inbox bound + one frame being read + output to the
        // high-water mark + a frame over it + the ring.
        let perHog = (256 << 10) + 2 * (1 << 20) + (1 << 20) + (1 << 20) + (64 << 10)
        if !underAddressSanitizer {
            XCTAssertLessThan(grown, hogCount * perHog + (16 << 20), "server memory grew by \(grown) bytes")
        }
        try await fresh.close()
    }

    /// A send waiting for room (no writeTimeout) ends with CancellationError
    /// when its task is cancelled; the waiter is gone and the connection
    /// still works once the peer reads.
    func testCancellingASendWaitingForRoom() async throws {
        let group = try makeGroup()
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: listener.port, group: group)
        let peer = try listener.accept()
        let big = [UInt8](repeating: 2, count: 1 << 20)
        // Fill the queue to the high-water mark: the peer reads nothing yet.
        var accepted = 0
        while try await !client.onLoop({ client.core.outputIsFull }) {
            try await client.send(big)
            accepted += 1
            XCTAssertLessThan(accepted, 64, "the queue never filled")
        }
        let blocked = Task { try await client.send(big) }
        try await eventually { await client.onLoopValue { client.core.outputWaiterCount > 0 } }
        blocked.cancel()
        do {
            try await blocked.value
            XCTFail("the send was accepted although the queue was full")
        } catch {
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        // The peer reads everything; the connection still accepts and delivers.
        let receiver = try peer.start()
        let reader = Task.detached { () -> Int in
            var got = 0
            while let message = try? receiver.receive() {
                if message == [9] { return got }
                got += 1
            }
            return -1
        }
        try await client.send([9])
        let read = await reader.value
        XCTAssertEqual(read, accepted, "every accepted message, then the one after the cancellation")
        try await client.close()
    }

    func testGracefulCloseDrainsEveryAcceptedMessage() async throws {
        let group = try makeGroup()
        let events = ServerEvents()
        let server = try TobyServer.listen(port: 0, group: group) { _ in RecordingHandler(events: events) }
        defer { server.close() }
        let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
        let payloads = (0..<5000).map { pattern(1 + $0 % 200, seed: UInt64($0)) }
        for payload in payloads { try await client.send(payload) }
        try await client.close()
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.received, payloads)
        XCTAssertNil(events.closed[0])
    }

    func testConnectFailuresAndCancellation() async throws {
        let group = try makeGroup()
        // A port nobody listens on.
        let unused = try TobyListener(port: 0)
        let port = unused.port
        unused.close()
        do {
            _ = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group)
            XCTFail("connected to a closed port")
        } catch let error as TobyError {
            // The same case, and words, as the blocking connect's.
            XCTAssertEqual(error, .systemAtAddress(operation: "connect", address: "127.0.0.1:\(port)", errno: ECONNREFUSED))
            XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port)) { blocking in
                XCTAssertEqual(blocking as? TobyError, error)
            }
        }
        do {
            _ = try await TobyAsyncConnection.connect(host: "no-such-host.invalid", port: 1, group: group)
            XCTFail("resolved an invalid name")
        } catch let error as TobyError {
            guard case .unresolvableHost = error else { return XCTFail("\(error)") }
        }
        // A connect that cannot complete (a full backlog on a listener that
        // never accepts, SYNs dropped) ends with the timeout, or with the
        // task's cancellation.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        listen(fd, 0)
        defer { close(fd) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        let fullPort = Int(UInt16(bigEndian: address.sin_port))
        var fillers: [RawPeer] = []
        for _ in 0..<4 {
            var filler: Int32 = -1
            let flags = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            filler = flags
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = connect(filler, $0, length) }
            }
            fillers.append(RawPeer(fd: filler))
        }
        let attempt = Task {
            try await TobyAsyncConnection.connect(host: "127.0.0.1", port: fullPort, group: group, timeout: .seconds(30))
        }
        // Until the connect waits on one of the loops (each read on its own thread).
        try await eventually {
            var waiting = 0
            for loop in group.loops { waiting += await withTaskExecutorPreference(loop) { loop.writableWaitCount } }
            return waiting > 0
        }
        attempt.cancel()
        do {
            let connection = try await attempt.value
            connection.abort()
            XCTFail("the connect into a full backlog completed")
        } catch {
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        let timed = Task {
            try await TobyAsyncConnection.connect(host: "127.0.0.1", port: fullPort, group: group, timeout: .milliseconds(200))
        }
        do {
            let connection = try await timed.value
            connection.abort()
            XCTFail("the connect into a full backlog completed")
        } catch let error as TobyError {
            XCTAssertEqual(error, .connectTimedOut(address: "127.0.0.1:\(fullPort)", timeout: .milliseconds(200)))
            XCTAssertEqual(
                error.description, "timed out: the connect to 127.0.0.1:\(fullPort) did not complete within 0.2 seconds")
        }
    }

    func testThousandIdleConnectionsInATaskGroup() async throws {
        _ = raiseDescriptorLimit()
        let group = try makeGroup()
        let server = try asyncEchoServer(group: group)
        let port = server.port
        let connections = try await withThrowingTaskGroup(of: TobyAsyncConnection.self) { tasks in
            for _ in 0..<1000 {
                tasks.addTask { try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group) }
            }
            var all: [TobyAsyncConnection] = []
            for try await connection in tasks { all.append(connection) }
            return all
        }
        XCTAssertTrue(ServerEvents().wait { server.connectionCount == 1000 })
        // All idle, every one still answers.
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (i, connection) in connections.enumerated() {
                tasks.addTask {
                    try await connection.send([UInt8(i & 0xff)])
                    var iterator = connection.messages.makeAsyncIterator()
                    let reply = try await iterator.next()
                    XCTAssertEqual(reply.map { Array($0) }, [UInt8(i & 0xff)])
                    try await connection.close()
                }
            }
            try await tasks.waitForAll()
        }
    }

    func testBorrowingReceiveAndErrorsAfterCompleteMessages() async throws {
        let group = try makeGroup()
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let client = try await TobyAsyncConnection.connect(
            host: "127.0.0.1", port: listener.port, configuration: try TobyConfiguration(maxFrameLength: 10), group: group)
        let peer = try listener.accept()
        let raw = peer.socket.fd
        let bytes = frame([1, 2, 3]) + TobyProtocol.prefix(length: 11)
        _ = bytes.withUnsafeBytes { send(raw, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let sum = try await client.receive { $0.reduce(0) { $0 + Int($1) } }
        XCTAssertEqual(sum, 6)
        do {
            _ = try await client.withNextMessage { $0.byteCount }
            XCTFail("the oversized prefix must end the stream")
        } catch let error as TobyError {
            guard case .frameTooLarge(let length, let limit, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(length, 11)
            XCTAssertEqual(limit, 10)
        }
    }
}

/// The loop's output queue under partial writes: small (inline) frames
/// that fill the socket buffer and leave in many pieces arrive intact.
final class OutputQueuePartialWriteTests: XCTestCase {
    func testInlineFramesSurvivePartialWrites() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        // A Unix socket: a send buffer of about 208 KiB, which one batch
        // below overfills, so writes end mid-frame, again and again.
        let path = "/tmp/toby-partial-\(getpid()).sock"
        unlink(path)
        let listener = try TobyListener(unixPath: path)
        defer { listener.close() }
        let client = try await TobyAsyncConnection.connect(unixPath: path, group: group)
        let peer = try listener.accept()
        let receiver = try peer.start()
        // 1,000-byte payloads (copied inline, with their prefix), 256 to a
        // batch (252 KiB), 4 MiB in all.
        let payloads = (0..<4096).map { pattern(1000, seed: UInt64($0)) }
        let got = Mailbox<[[UInt8]]>()
        Thread {
            var messages: [[UInt8]] = []
            while messages.count < payloads.count, let message = try? receiver.receive() { messages.append(message) }
            got.put(messages)
        }.start()
        do {
            for start in stride(from: 0, to: payloads.count, by: 256) {
                try await client.send(contentsOf: Array(payloads[start..<(start + 256)]))
            }
            try await client.flush()
        } catch {
            client.abort()  // ends the reader's wait
            throw error
        }
        let messages = try XCTUnwrap(got.take())
        XCTAssertEqual(messages.count, payloads.count)
        XCTAssertTrue(messages == payloads, "bytes changed on the way")
        try await client.close()
    }
}

/// Errors that say what happened, whichever API raised them.
final class AsyncErrorTests: XCTestCase {
    /// A peer that resets while we send: the sends that follow report the
    /// reset, never `closed` (which blames our own close).
    func testAResetWhileSendingIsNotReportedAsOurClose() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let client = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: listener.port, group: group)
        let accepted = try listener.accept()
        // The peer goes away with a reset, never reading.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(accepted.socket.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        accepted.socket.shutdown(Int32(SHUT_RDWR))
        var last: TobyError?
        for _ in 0..<1000 {
            do {
                try await client.send([UInt8](repeating: 1, count: 1000))
                try await client.flush()
            } catch let error as TobyError {
                last = error
                break
            }
        }
        let error = try XCTUnwrap(last, "the sends failed")
        XCTAssertNotEqual(error, .closed, "\(error)")
        XCTAssertTrue([ECONNRESET, EPIPE].contains(error.systemErrno ?? 0), "\(error)")
        do {
            try await client.send([2])
            XCTFail("a send after the reset")
        } catch let again as TobyError {
            XCTAssertEqual(again, error, "every later send reports the same reset")
        }
        if case .system(let operation, EPIPE) = error { XCTAssertEqual(operation, "sendmsg") }
    }
}
