/// Ping-pong: send one 64 B message, wait for its echo, repeat; round-trip
/// latency in an HdrHistogram after a warm-up.
enum PingPong {
    static func scenario(_ settings: Settings) -> Scenario {
        let count = settings.count(20_000, quick: 5_000)
        let warmup = settings.count(2_000, quick: 500)
        let timeout = settings.timeout
        let us: @Sendable (Double) -> String = { fixed($0, 1) }
        return Scenario(
            id: "ping-pong-64-B",
            title: "ping-pong 64 B round trip",
            parameters: [("payload_bytes", 64), ("round_trips", Double(count)), ("warmup", Double(warmup))],
            columns: [
                Metric(key: "p50_us", header: "p50 µs", format: us),
                Metric(key: "p99_us", header: "p99 µs", format: us),
                Metric(key: "p999_us", header: "p99.9 µs", format: us),
                Metric(key: "max_us", header: "max µs", format: us),
            ],
            primary: "p50_us", higherIsBetter: false, chart: false,
            rows: [
                Row(name: "TobyTCP send(_:) + receive()", family: .toby) {
                    try Toby.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
                Row(name: "TobyTCP async (loop) send(_:) + for try await", family: .toby) {
                    try TobyAsync.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
                Row(name: "pure Swift (2 writes, 2 reads / msg)", family: .pure) {
                    try PureSwift.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
                Row(name: "SwiftNIO (echo handler)", family: .nio) {
                    try NIO.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
                Row(name: "SwiftNIO async (NIOAsyncChannel)", family: .nioAsync) {
                    try NIOAsync.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
                Row(name: "kernel ceiling (1 write, 1 read)", family: .kernel) {
                    try Kernel.pingPong(count: count, warmup: warmup, timeout: timeout)
                },
            ])
    }
}
