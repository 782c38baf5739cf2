import CTobyFrame
import TobyTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

@testable import TobyTCP

/// A server shutting down, for the handler and the async API: it goes on
/// serving within the grace period, then stops delivering; every message
/// it delivered has its reply delivered before a clean end of stream.
final class ShutdownTests: XCTestCase {
    enum API: CaseIterable { case handler, async }

    /// An echo server that counts the messages its application was given.
    private func echoServer(
        _ api: API, counter: DeliveryCounter, group: TobyEventLoopGroup,
        options: TobyServer.Options = .init()
    ) throws -> TobyServer {
        switch api {
        case .handler:
            struct CountingEcho: TobyServerHandler {
                let counter: DeliveryCounter
                func received(_ messages: TobyMessages, on connection: TobyConnection) {
                    counter.add(messages.count)
                    do { try connection.send(contentsOf: messages) } catch { XCTFail("reply refused: \(error)") }
                }
            }
            return try TobyServer.listen(port: 0, options: options, group: group) { _ in CountingEcho(counter: counter) }
        case .async:
            return try TobyServer.serve(port: 0, options: options, group: group) { connection in
                for try await batch in connection.batches {
                    counter.add(batch.count)
                    try await connection.send(contentsOf: batch)
                }
            }
        }
    }

    /// The grace period runs out while the client is still pipelining: the
    /// replies it owes for what it delivered all arrive, then a clean end.
    func testShutdownPastTheGracePeriodLosesNoReplyItOwes() throws {
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        for api in API.allCases {
            for grace in [Duration.zero, .milliseconds(50)] {
                let counter = DeliveryCounter()
                let server = try echoServer(api, counter: counter, group: group)
                let probe = try PipeliningProbe(port: server.port)
                let outcome = try probe.run(count: 50_000_000, triggerAfter: 5_000) {
                    server.close(gracePeriod: grace)
                }
                let label = "\(api), grace \(grace)"
                XCTAssertNil(outcome.endError, "\(label): a clean end of stream, not a reset")
                XCTAssertTrue(outcome.inOrder, label)
                XCTAssertEqual(outcome.replies, counter.value, "\(label): every delivered message was answered")
                XCTAssertLessThanOrEqual(outcome.replies, outcome.sent, label)
                XCTAssertLessThan(outcome.sent, 50_000_000, "\(label): the server ended the stream, not the client")
                XCTAssertEqual(server.connectionCount, 0, label)
            }
        }
    }

    /// Within the grace period the server keeps serving: a client that
    /// goes on pipelining after the close began gets every echo, and the
    /// close returns once that client has ended, before the grace period.
    func testConnectionsAreServedUntilTheyEndWithinTheGracePeriod() throws {
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        for api in API.allCases {
            let counter = DeliveryCounter()
            let server = try echoServer(api, counter: counter, group: group)
            let probe = try PipeliningProbe(port: server.port)
            let closed = DeliveryCounter()
            let start = ContinuousClock.now
            let outcome = try probe.run(count: 100_000, triggerAfter: 1_000) {
                server.close(gracePeriod: .seconds(30))
                closed.add(1)
            }
            XCTAssertNil(outcome.endError, "\(api)")
            XCTAssertTrue(outcome.inOrder, "\(api)")
            XCTAssertEqual(outcome.replies, 100_000, "\(api): served to the end within the grace period")
            XCTAssertEqual(counter.value, 100_000, "\(api)")
            XCTAssertEqual(closed.value, 1)
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(20), "\(api): close returned once the client ended")
            XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: server.port), "\(api): not accepting")
        }
    }

    /// A handler that owes a reply computed on another thread may send it
    /// after the grace period (its `shouldQuiesce` does not close at once):
    /// the reply arrives, then a clean end of stream.
    func testAHandlerMaySendWhatItOwesAfterTheGracePeriod() throws {
        final class Gates: @unchecked Sendable {
            let lock = ConditionLock()
            var delivered = false, quiesced = false  // guarded by lock
            func set(_ flag: ReferenceWritableKeyPath<Gates, Bool>) {
                lock.withLock {
                    self[keyPath: flag] = true; lock.broadcast()
                }
            }
            func wait(_ flag: ReferenceWritableKeyPath<Gates, Bool>) {
                lock.withLock { while !self[keyPath: flag] { lock.wait() } }
            }
        }
        struct Deferred: TobyServerHandler {
            let gates: Gates
            func received(_ messages: TobyMessages, on connection: TobyConnection) {
                let copies = messages.copied()
                gates.set(\.delivered)
                // The reply is computed elsewhere, and only after the grace period.
                _ = try? Threads.spawn { [gates] in
                    gates.wait(\.quiesced)
                    for message in copies { try? connection.send(message) }
                    connection.close()
                }
            }
            func shouldQuiesce(on connection: TobyConnection) { gates.set(\.quiesced) }
        }
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let gates = Gates()
        let server = try TobyServer.listen(port: 0, group: group) { _ in Deferred(gates: gates) }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        peer.write(frame([1, 2, 3]))
        gates.wait(\.delivered)
        let closing = try Threads.start { server.close(gracePeriod: .zero) }
        XCTAssertEqual(peer.readFrame(), [1, 2, 3], "the reply owed, sent after the grace period")
        XCTAssertEqual(peer.readEndErrno(), 0, "then a clean end of stream")
        peer.closeNow()
        closing.join()
        XCTAssertEqual(server.connectionCount, 0)
    }

    /// A peer that goes on sending after the linger is reset, and the
    /// server's close does not wait past its linger for it.
    func testAPeerStillSendingAfterTheLingerIsReset() throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let server = try TobyServer.listen(
            port: 0, options: .init(shutdownLinger: .milliseconds(200)), group: group
        ) { _ in EchoHandler() }
        let peer = try connectRaw(port: server.port)
        peer.write(frame([7]))
        XCTAssertEqual(peer.readFrame(), [7])
        let start = ContinuousClock.now
        let closing = try Threads.start { server.close(gracePeriod: .zero) }
        // Keep sending well-formed frames, never ending our side.
        var failed = false
        let chunk = frame([UInt8](repeating: 1, count: 4088))
        while ContinuousClock.now - start < .seconds(10) {
            let n = chunk.withUnsafeBytes { send(peer.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                failed = true
                break
            }
        }
        let elapsed = ContinuousClock.now - start
        closing.join()
        XCTAssertTrue(failed, "the server reset the connection")
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(200), "not before the linger ran out")
        XCTAssertLessThan(elapsed, .seconds(5), "close waited for the linger, not longer")
        XCTAssertEqual(server.connectionCount, 0)
    }

    // MARK: The blocking API

    /// A thread-per-connection echo on the blocking API, shut down with
    /// `TobyMessenger.shutdown(linger:)` while its client pipelines: every
    /// message the thread received has its echo delivered, then a clean end.
    func testBlockingShutdownLosesNoReplyItOwes() throws {
        for size in [64, 100_000] {
            let listener = try TobyListener(host: "127.0.0.1", port: 0)
            defer { listener.close() }
            let probe = try PipeliningProbe(port: listener.port, payloadSize: size)
            let served = try listener.accept()
            let delivered = DeliveryCounter()
            let thread = try Threads.start {
                guard let receiver = try? served.start() else { return }
                while let message = try? receiver.receive() {
                    delivered.add(1)
                    do { try served.send(message) } catch { XCTFail("reply refused: \(error)") }
                }
                try? served.close()
            }
            let outcome = try probe.run(count: 50_000_000, triggerAfter: size > 1000 ? 200 : 5_000) {
                served.shutdown(linger: .seconds(5))
            }
            thread.join()
            XCTAssertNil(outcome.endError, "\(size) B: a clean end of stream, not a reset")
            XCTAssertTrue(outcome.inOrder)
            XCTAssertEqual(outcome.replies, delivered.value, "\(size) B: every delivered message was answered")
            XCTAssertLessThan(outcome.sent, 50_000_000)
        }
    }

    /// Shutting down a blocking connection whose thread waits in a receive
    /// and whose peer is idle: the receive returns the end, the peer reads a
    /// clean end of stream, and the shutdown does not wait for the linger.
    func testBlockingShutdownOfAnIdleConnection() throws {
        let listener = try TobyListener(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let peer = try connectRaw(port: listener.port)
        peer.setReceiveTimeout(seconds: 10)
        let served = try listener.accept()
        let receiver = try served.start()
        let ended = DeliveryCounter()
        let thread = try Threads.start {
            while (try? receiver.receive()) ?? nil != nil {}
            ended.add(1)
        }
        peer.write(frame([1]))
        let start = ContinuousClock.now
        served.shutdown(linger: .seconds(5))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3), "acknowledged and quiet: no need to wait")
        thread.join()
        XCTAssertEqual(ended.value, 1, "the waiting receive returned the end")
        XCTAssertNil(peer.readFrame(), "a clean end of stream")
        XCTAssertEqual(peer.readEndErrno(), 0)
        XCTAssertThrowsError(try served.send([2]), "nothing is sent after the shutdown")
    }
}
