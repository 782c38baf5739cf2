/// Four threads send 64 B messages through one shared connection; one
/// receiver checks every thread's messages arrive whole and in order.
/// Write syscalls are the process's `syscw` delta (see WriteSyscalls).
enum SharedSenders {
    static let threads = 4

    static func scenario(_ settings: Settings) -> Scenario {
        let perThread = settings.count(50_000, quick: 10_000)
        let timeout = settings.timeout, threads = SharedSenders.threads
        return Scenario(
            id: "shared-senders-4",
            title: "4 threads sharing one sender, 64 B",
            parameters: [("payload_bytes", 64), ("threads", Double(threads)), ("messages_per_thread", Double(perThread))],
            columns: [
                Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate),
                Metric(key: "writes_per_msg", header: "writes/msg", format: { $0 >= 0.01 ? fixed($0, 4) : fixed($0, 6) }),
            ],
            primary: "msgs_per_s", higherIsBetter: true, chart: true,
            rows: [
                Row(name: "TobyTCP 4 threads × send(_:)", family: .toby) {
                    try Toby.sharedSenders(threads: threads, perThread: perThread, timeout: timeout)
                },
                Row(name: "pure Swift (lock around 2 writes)", family: .pure) {
                    try PureSwift.sharedSenders(threads: threads, perThread: perThread, timeout: timeout)
                },
                Row(name: "SwiftNIO writeAndFlush from 4 threads", family: .nio) {
                    try NIO.sharedSenders(threads: threads, perThread: perThread, style: .writeAndFlush, timeout: timeout)
                },
                Row(name: "SwiftNIO 4 threads, 256 writes + flush / execute", family: .nio) {
                    try NIO.sharedSenders(threads: threads, perThread: perThread, style: .batches, timeout: timeout)
                },
                Row(name: "kernel ceiling (lock, \(Kernel.label))", family: .kernel) {
                    try Kernel.sharedSenders(threads: threads, perThread: perThread, timeout: timeout)
                },
            ])
    }
}
