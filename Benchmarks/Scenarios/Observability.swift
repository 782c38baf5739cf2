import Logging
import MetricsTestKit
import TobyTCP
import TobyTCPLogging
import TobyTCPMetrics

/// What watching a server costs (issue 18): the handler echo as shipped
/// (statistics always counted), with a swift-log `Logger` at `.info` as its
/// observer, and with the metrics product reporting every second. Rows run
/// in rounds so that drift of the machine spreads over all three. The cost
/// of counting itself, against a build with it compiled out, is measured
/// by `Scripts/statistics-overhead.sh` (a second build of this executable).
enum Observability {
    static func scenarios(_ settings: Settings) -> [Scenario] {
        [
            scenario(
                settings, id: "observability-1-conn", title: "observability: 1 connection pipelined 64 B, 256 in flight",
                connections: 1, messages: settings.count(4_000_000, quick: 200_000), window: 256, clientThreads: 1),
            scenario(
                settings, id: "observability-64-conn",
                title: "observability: 64 connections pipelined 64 B, 64 in flight each", connections: 64,
                messages: settings.count(30_000, quick: 2_000), window: 64, clientThreads: EchoBench.cores),
        ]
    }

    static let plainRow = "TobyServer handler (statistics counted, as shipped)"

    static func scenario(
        _ settings: Settings, id: String, title: String, connections: Int, messages: Int, window: Int, clientThreads: Int
    ) -> Scenario {
        let loops = EchoBench.cores
        func row(_ name: String, _ start: @escaping () throws -> any EchoServer) -> Row {
            Row(name: name, family: .toby) {
                try EchoBench.run(
                    connections: connections, messages: messages, window: window, clientThreads: clientThreads,
                    idleMemory: false, timeout: settings.timeout, start: start)
            }
        }
        var scenario = Scenario(
            id: id, title: title,
            parameters: [
                ("payload_bytes", 64), ("connections", Double(connections)), ("messages_per_connection", Double(messages)),
                ("in_flight", Double(window)), ("server_loops", Double(loops)), ("client_threads", Double(clientThreads)),
            ],
            columns: [Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate)],
            primary: "msgs_per_s", higherIsBetter: true, chart: false,
            rows: [
                row(plainRow) { try TobyServerEcho(loops: loops) },
                row("… + TobyLoggingObserver, Logger at .info") {
                    var logger = Logger(label: "benchmarks") { _ in SwiftLogNoOpLogHandler() }
                    logger.logLevel = .info
                    var options = TobyServer.Options()
                    options.observer = TobyLoggingObserver(logger: logger)
                    return try TobyServerEcho(loops: loops, options: options)
                },
                row("… + TobyMetricsReporter every 1 s (swift-metrics TestMetrics)") {
                    try TobyServerEcho(loops: loops) { server in
                        let reporter = TobyMetricsReporter(
                            server: server, dimensions: [("bench", "1")], factory: TestMetrics())
                        reporter.start(every: .seconds(1))
                        return { reporter.stop() }
                    }
                },
            ])
        scenario.interleaved = true
        scenario.runs = settings.quick ? 1 : 7
        scenario.summary = { result in
            guard let plain = result.rows.first(where: { $0.name == plainRow }) else { return [] }
            let parts = result.rows.dropFirst().compactMap { row -> String? in
                guard let ratio = result.ratio(row, to: plain) else { return nil }
                let name = row.name.contains("Logging") ? "Logger at .info" : "metrics every 1 s"
                return "\(name) \(Table.times(ratio)) (≥ 0.98×: \(ratio >= 0.98 ? "met" : "MISSED"))"
            }
            return parts.isEmpty ? [] : ["issue 18 targets: " + parts.joined(separator: ", ") + " of the plain handler"]
        }
        return scenario
    }
}
