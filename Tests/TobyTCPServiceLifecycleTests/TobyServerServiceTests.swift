import Logging
import ServiceLifecycle
import TobyTCP
import TobyTCPServiceLifecycle
import TobyTestSupport
import XCTest

final class TobyServerServiceTests: XCTestCase {
    /// Graceful shutdown: the server stops accepting, and every message a
    /// connection had accepted still reaches the peer before its end.
    func testGracefulShutdownDrainsEveryAcceptedMessage() async throws {
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        let payloads = (0..<2000).map { i in [UInt8](repeating: UInt8(i & 0xff), count: 1 + i % 500) }
        let server = try TobyServer.serve(port: 0, group: group) { connection in
            // A server that streams to each client until the end.
            try await connection.send(contentsOf: payloads)
            for try await _ in connection.messages {}
        }
        let port = server.port
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        // The client never ends its stream: the grace period runs out, the
        // task sees the end of its inbound and returns, and what it sent
        // still arrives before the end of stream.
        let services = ServiceGroup(
            services: [TobyServerService(server: server, gracePeriod: .milliseconds(100))], logger: logger)
        let running = Task { try await services.run() }

        let client = try TobyMessenger.connect(host: "127.0.0.1", port: port)
        let receiver = try client.start()
        XCTAssertEqual(try receiver.receive(), payloads[0], "connected and served")
        await services.triggerGracefulShutdown()
        var got = 1
        while let message = try receiver.receive() {
            XCTAssertEqual(message, payloads[got])
            got += 1
        }
        XCTAssertEqual(got, payloads.count, "every accepted message arrived before the end of stream")
        try await running.value
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port), "no longer accepting")
    }

    /// Graceful shutdown of an async echo server while a client pipelines:
    /// every message the server's task received has its echo delivered,
    /// in order, before a clean end of stream (no reset), with a grace
    /// period that runs out and one that the client's end beats.
    func testGracefulShutdownAnswersEveryDeliveredMessage() async throws {
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        for (grace, count) in [(Duration.milliseconds(20), 50_000_000), (.seconds(30), 100_000)] {
            let delivered = DeliveryCounter()
            let server = try TobyServer.serve(port: 0, group: group) { connection in
                for try await batch in connection.batches {
                    delivered.add(batch.count)
                    try await connection.send(contentsOf: batch)
                }
            }
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let services = ServiceGroup(services: [TobyServerService(server: server, gracePeriod: grace)], logger: logger)
            let running = Task { try await services.run() }
            let probe = try PipeliningProbe(port: server.port)
            let outcome = try await Task.detached {
                try probe.run(count: count, triggerAfter: 2_000) {
                    Task { await services.triggerGracefulShutdown() }
                }
            }.value
            try await running.value
            XCTAssertNil(outcome.endError, "grace \(grace): a clean end of stream, not a reset")
            XCTAssertTrue(outcome.inOrder)
            XCTAssertEqual(outcome.replies, delivered.value, "grace \(grace): every delivered message answered")
            if count == 100_000 { XCTAssertEqual(outcome.replies, count, "served to the end within the grace period") }
        }
    }

    func testCancellationClosesTheServer() async throws {
        let server = try TobyServer.listen(port: 0) { _ in Echo() }
        let service = TobyServerService(server: server, gracePeriod: .seconds(1))
        let running = Task { try await service.run() }
        running.cancel()
        try await running.value
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: server.port))
    }
}

private struct Echo: TobyServerHandler {
    func received(_ messages: TobyMessages, on connection: TobyConnection) {
        try? connection.send(contentsOf: messages)
    }
}
