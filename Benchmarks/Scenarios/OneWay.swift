/// One-way throughput: a sender thread, a receiver thread, one connection;
/// the clock stops when the last message has arrived and been checked.
enum OneWay {
    static let sizes: [(bytes: Int, label: String, full: Int, quick: Int)] = [
        (16, "16 B", 300_000, 50_000),
        (64, "64 B", 300_000, 50_000),
        (1 << 10, "1 KiB", 100_000, 20_000),
        (64 << 10, "64 KiB", 4_000, 1_000),
        (1 << 20, "1 MiB", 256, 64),
    ]

    static let columns = [
        Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate),
        Metric(key: "mb_per_s", header: "MB/s", format: { fixed($0, 1) }),
    ]

    static func scenarios(_ settings: Settings) -> [Scenario] {
        sizes.map { size in
            let count = settings.count(size.full, quick: size.quick)
            let bytes = size.bytes, timeout = settings.timeout
            return Scenario(
                id: "one-way-\(size.label.replacingSpaces)",
                title: "one-way \(size.label)",
                parameters: [("payload_bytes", Double(bytes)), ("messages", Double(count))],
                columns: columns, primary: "msgs_per_s", higherIsBetter: true, chart: true,
                rows: [
                    Row(name: "TobyTCP send(contentsOf:) → receive()", family: .toby) {
                        try Toby.oneWay(size: bytes, count: count, sending: .batches, receiving: .copying, timeout: timeout)
                    },
                    Row(name: "TobyTCP send(_:) → receive()", family: .toby) {
                        try Toby.oneWay(size: bytes, count: count, sending: .perMessage, receiving: .copying, timeout: timeout)
                    },
                    Row(name: "TobyTCP send(contentsOf:) → receive { }", family: .toby) {
                        try Toby.oneWay(size: bytes, count: count, sending: .batches, receiving: .borrowing, timeout: timeout)
                    },
                    Row(name: "TobyTCP async (loop) send(contentsOf:) → for try await", family: .toby) {
                        try TobyAsync.oneWay(size: bytes, count: count, timeout: timeout)
                    },
                    Row(name: "pure Swift (2 writes, 2 reads / msg)", family: .pure) {
                        try PureSwift.oneWay(size: bytes, count: count, timeout: timeout)
                    },
                    Row(name: "SwiftNIO (write ×256 + flush)", family: .nio) {
                        try NIO.oneWay(size: bytes, count: count, timeout: timeout)
                    },
                    Row(name: "SwiftNIO async (NIOAsyncChannel)", family: .nioAsync) {
                        try NIOAsync.oneWay(size: bytes, count: count, timeout: timeout)
                    },
                    Row(name: "kernel ceiling (\(Kernel.label))", family: .kernel) {
                        try Kernel.oneWay(size: bytes, count: count, timeout: timeout)
                    },
                ])
        }
    }
}

extension String {
    var replacingSpaces: String { String(map { $0 == " " ? "-" : $0 }) }
}
