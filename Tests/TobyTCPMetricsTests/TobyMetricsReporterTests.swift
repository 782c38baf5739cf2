import CTobyFrame
import Metrics
import MetricsTestKit
import Prometheus
import XCTest

@testable import TobyTCP
@testable import TobyTCPMetrics

#if canImport(Glibc)
import Glibc
#endif

private struct Echo: TobyServerHandler {
    func received(_ messages: TobyMessages, on connection: TobyConnection) {
        try? connection.send(contentsOf: messages)
    }
}

final class TobyMetricsReporterTests: XCTestCase {
    /// Sends `count` messages of `payload` on a new connection, reads the
    /// echoes and ends the connection; returns the bytes one way.
    private func traffic(port: Int, count: Int, payload: [UInt8]) throws -> Int {
        var fd: Int32 = -1
        XCTAssertEqual(toby_socket_connect_tcp("127.0.0.1", UInt16(port), &fd, nil), 0)
        defer { close(fd) }
        let frames = (0..<count).flatMap { _ in TobyProtocol.encode(payload) }
        XCTAssertEqual(send(fd, frames, frames.count, Int32(MSG_NOSIGNAL)), frames.count)
        var echoed = [UInt8](repeating: 0, count: frames.count)
        XCTAssertEqual(recv(fd, &echoed, echoed.count, Int32(MSG_WAITALL)), frames.count)
        XCTAssertEqual(echoed, frames)
        shutdown(fd, Int32(SHUT_WR))
        var byte: UInt8 = 0
        XCTAssertEqual(recv(fd, &byte, 1, 0), 0)
        return frames.count
    }

    private func waitUntilClosed(_ server: TobyServer, count: Int) {
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while server.statistics().connectionsClosed < count && monotonicNanoseconds() < deadline { usleep(1000) }
    }

    func testCountersAndGaugeFollowTheStatistics() throws {
        let metrics = TestMetrics()
        let server = try TobyServer.listen(port: 0) { _ in Echo() }
        defer { server.close(gracePeriod: .zero) }
        let reporter = TobyMetricsReporter(server: server, dimensions: [("service", "echo")], factory: metrics)
        let bytes = try traffic(port: server.port, count: 10, payload: Array("toby".utf8))
        waitUntilClosed(server, count: 1)
        reporter.report()
        let dimensions = [("server_address", server.address), ("service", "echo")]
        XCTAssertEqual(try metrics.expectCounter("toby_server_messages_received_total", dimensions).totalValue, 10)
        XCTAssertEqual(try metrics.expectCounter("toby_server_messages_sent_total", dimensions).totalValue, 10)
        XCTAssertEqual(try metrics.expectCounter("toby_server_bytes_received_total", dimensions).totalValue, Int64(bytes))
        XCTAssertEqual(try metrics.expectCounter("toby_server_bytes_sent_total", dimensions).totalValue, Int64(bytes))
        XCTAssertEqual(try metrics.expectCounter("toby_server_connections_accepted_total", dimensions).totalValue, 1)
        XCTAssertEqual(try metrics.expectCounter("toby_server_connections_closed_total", dimensions).totalValue, 1)
        XCTAssertEqual(try metrics.expectMeter("toby_server_connections_open", dimensions).lastValue, 0)
        // A second report adds only what changed since.
        _ = try traffic(port: server.port, count: 5, payload: [1])
        waitUntilClosed(server, count: 2)
        reporter.report()
        reporter.report()
        XCTAssertEqual(try metrics.expectCounter("toby_server_messages_received_total", dimensions).totalValue, 15)
        XCTAssertEqual(try metrics.expectCounter("toby_server_connections_closed_total", dimensions).totalValue, 2)
    }

    func testPrometheusExpositionHasEveryDocumentedName() throws {
        let registry = PrometheusCollectorRegistry()
        let server = try TobyServer.listen(port: 0) { _ in Echo() }
        defer { server.close(gracePeriod: .zero) }
        let reporter = TobyMetricsReporter(server: server, factory: PrometheusMetricsFactory(registry: registry))
        _ = try traffic(port: server.port, count: 3, payload: [7, 7])
        waitUntilClosed(server, count: 1)
        reporter.start(every: .milliseconds(20))
        defer { reporter.stop() }
        // The reporting thread's first report lands within a few intervals.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        var text = registry.emitToString()
        while !text.contains("toby_server_messages_received_total{server_address=\"\(server.address)\"} 3"),
            monotonicNanoseconds() < deadline
        {
            usleep(5000)
            text = registry.emitToString()
        }
        for name in TobyMetricsReporter.names {
            XCTAssertTrue(text.contains(name), "\(name) missing from:\n\(text)")
        }
        XCTAssertTrue(text.contains("toby_server_messages_received_total{server_address=\"\(server.address)\"} 3"), text)
        XCTAssertTrue(text.contains("kind=\"frame_too_large\""), text)
    }
}
