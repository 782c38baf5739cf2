import Logging
import ServiceLifecycle
import TobyTCP
import TobyTCPServiceLifecycle
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
        let services = ServiceGroup(services: [TobyServerService(server: server)], logger: logger)
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
