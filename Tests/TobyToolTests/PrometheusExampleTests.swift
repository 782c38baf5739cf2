import Foundation
import XCTest

/// `Examples/PrometheusMetrics`: swift-metrics bootstrapped with
/// swift-prometheus exposes every metric the reporter documents.
final class PrometheusExampleTests: XCTestCase {
    /// The names `TobyMetricsReporter.names` lists (this target links no library).
    private static let names = [
        "toby_server_connections_open", "toby_server_connections_accepted_total",
        "toby_server_connections_closed_total", "toby_server_accept_failures_total",
        "toby_server_messages_received_total", "toby_server_messages_sent_total",
        "toby_server_bytes_received_total", "toby_server_bytes_sent_total",
        "toby_server_connection_errors_total", "toby_server_read_pauses_total",
        "toby_server_write_timeouts_total",
    ]

    func testTheExampleExposesEveryMetric() throws {
        let path = try BuiltExecutable.require("PrometheusMetrics", environmentVariable: "PROMETHEUS_EXAMPLE_BINARY")
        let process = try ToolProcess([], executable: path)
        defer { process.kill() }
        let stdout = try process.stdout.readToEnd()
        let (_, status) = try process.waitForExit()
        XCTAssertEqual(status, 0)
        for name in Self.names {
            XCTAssertTrue(stdout.contains("# TYPE \(name)"), "\(name) missing:\n\(stdout)")
        }
        XCTAssertTrue(stdout.contains("toby_server_messages_received_total{server_address=\"127.0.0.1:"), stdout)
        let received = stdout.split(separator: "\n").first { $0.hasPrefix("toby_server_messages_received_total{") }
        XCTAssertEqual(received?.split(separator: " ").last, "1", "one message echoed")
    }
}
