/// Pipelined echo: the client keeps 256 messages of 64 B in flight against
/// an echo server of the same implementation; round trips per second.
enum Pipelined {
    static let window = 256

    static func scenario(_ settings: Settings) -> Scenario {
        let count = settings.count(200_000, quick: 50_000)
        let timeout = settings.timeout, window = Pipelined.window
        return Scenario(
            id: "pipelined-64-B",
            title: "pipelined echo 64 B, 256 in flight",
            parameters: [("payload_bytes", 64), ("messages", Double(count)), ("in_flight", Double(window))],
            columns: [Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate)],
            primary: "msgs_per_s", higherIsBetter: true, chart: true,
            rows: [
                Row(name: "TobyTCP receive()+tryReceive() → send(contentsOf:)", family: .toby) {
                    try Toby.pipelined(count: count, window: window, timeout: timeout)
                },
                Row(name: "TobyTCP async (loop) batches → send(contentsOf:)", family: .toby) {
                    try TobyAsync.pipelined(count: count, window: window, batched: true, timeout: timeout)
                },
                Row(name: "TobyTCP async (loop) for try await → send(_:)", family: .toby) {
                    try TobyAsync.pipelined(count: count, window: window, batched: false, timeout: timeout)
                },
                Row(name: "pure Swift (read 1, write 1)", family: .pure) {
                    try PureSwift.pipelined(count: count, window: window, timeout: timeout)
                },
                Row(name: "SwiftNIO (flush on read complete)", family: .nio) {
                    try NIO.pipelined(count: count, window: window, timeout: timeout)
                },
                Row(name: "SwiftNIO async (NIOAsyncChannel)", family: .nioAsync) {
                    try NIOAsync.pipelined(count: count, window: window, timeout: timeout)
                },
                Row(name: "kernel ceiling (raw bytes echoed)", family: .kernel) {
                    try Kernel.pipelined(count: count, window: window, timeout: timeout)
                },
            ])
    }
}
