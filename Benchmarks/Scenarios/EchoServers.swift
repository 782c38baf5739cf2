/// Echo servers (issue 9): each server runs in this process on one thread
/// per core (SwiftNIO's group too); the clients are raw sockets on threads
/// of their own (`EchoClient`), identical for every server, and check every
/// echoed byte. Each run starts a fresh server, so its thread count is what
/// it added to the process.
enum EchoServers {
    static let wantedConnections = 10_000
    static let quickConnections = 1_000
    /// Descriptors left for everything but the connections.
    static let reserveDescriptors = 256

    static func scenarios(_ settings: Settings) -> [Scenario] {
        [
            pipelined(
                settings, id: "echo-servers-1-conn", title: "echo servers: 1 connection pipelined 64 B, 256 in flight",
                connections: 1, messages: settings.count(4_000_000, quick: 200_000), window: 256, clientThreads: 1),
            pipelined(
                settings, id: "echo-servers-64-conn", title: "echo servers: 64 connections pipelined 64 B, 64 in flight each",
                connections: 64, messages: settings.count(30_000, quick: 2_000), window: 64, clientThreads: EchoBench.cores),
            many(settings),
        ]
    }

    /// Threads the server added. Zero is a real figure: a server whose
    /// tasks run on Swift's global pool may add none (the pool's threads
    /// can exist already), which once failed CI's smoke run.
    static let threadsColumn = Metric(
        key: "server_threads", header: "threads", format: { fixed($0, 0) }, allowsZero: true)
    static let batchColumn = Metric(key: "echoes_per_client_read", header: "msgs/client read", format: { fixed($0, 1) })
    static let idleColumn = Metric(
        key: "idle_kib_per_connection", header: "KiB/idle conn", format: { fixed($0, 2) }, allowsZero: true)

    /// The four servers, as rows running `EchoBench.run`.
    static func rows(
        connections: Int, messages: Int, window: Int, clientThreads: Int, idleMemory: Bool, blockingRow: Bool,
        timeout: Double
    ) -> [Row] {
        let loops = EchoBench.cores
        func row(_ name: String, _ family: Family, _ start: @escaping () throws -> any EchoServer) -> Row {
            Row(name: name, family: family) {
                try EchoBench.run(
                    connections: connections, messages: messages, window: window, clientThreads: clientThreads,
                    idleMemory: idleMemory, timeout: timeout, start: start)
            }
        }
        var rows = [
            row("TobyServer handler, send(contentsOf:) batch (loops = cores)", .toby) { try TobyServerEcho(loops: loops) }
        ]
        rows.append(
            row("TobyServer.serve async, batches, task on its loop", .toby) { try TobyAsyncEcho(loops: loops, preferLoop: true) })
        rows.append(
            row("TobyServer.serve async, batches, task on the global pool", .toby) {
                try TobyAsyncEcho(loops: loops, preferLoop: false)
            })
        if blockingRow {
            rows.append(row("TobyTCP thread / conn (toby echo --api blocking)", .toby) { try TobyThreadEcho() })
        }
        rows.append(row("SwiftNIO (loops = cores, flush on read complete)", .nio) { try NIOEchoServer(loops: loops) })
        rows.append(row("SwiftNIO NIOAsyncChannel, task per connection", .nioAsync) { try NIOAsyncEchoServer(loops: loops) })
        rows.append(row("kernel echo (epoll, raw bytes, thread / core)", .kernel) { try KernelEchoServer(threads: loops) })
        return rows
    }

    static func pipelined(
        _ settings: Settings, id: String, title: String, connections: Int, messages: Int, window: Int, clientThreads: Int
    ) -> Scenario {
        var scenario = Scenario(
            id: id, title: title,
            parameters: [
                ("payload_bytes", 64), ("connections", Double(connections)), ("messages_per_connection", Double(messages)),
                ("in_flight", Double(window)), ("server_loops", Double(EchoBench.cores)),
                ("client_threads", Double(clientThreads)),
            ],
            columns: [Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate), threadsColumn, batchColumn],
            primary: "msgs_per_s", higherIsBetter: true, chart: true,
            rows: rows(
                connections: connections, messages: messages, window: window, clientThreads: clientThreads,
                idleMemory: false, blockingRow: true, timeout: settings.timeout))
        scenario.summary = { result in
            targets(result, nio: 5, kernel: 0.8) + asyncTargets(result, nioAsync: 10, handler: 0.5)
        }
        return scenario
    }

    /// 10,000 connections (1,000 with --quick) × 100 messages, 4 in flight
    /// each, fewer if RLIMIT_NOFILE cannot hold two descriptors per connection
    /// (client and server are both in this process).
    static func many(_ settings: Settings) -> Scenario {
        let wanted = settings.quick ? quickConnections : wantedConnections
        let limit = ProcessStats.descriptorLimit()
        let connections = max(1, min(wanted, (limit - reserveDescriptors) / 2))
        let messages = 100, window = 4, clientThreads = EchoBench.cores
        var scenario = Scenario(
            id: "echo-servers-10k-conn",
            title: "echo servers: \(connections) connections × \(messages) × 64 B, \(window) in flight each",
            parameters: [
                ("payload_bytes", 64), ("connections", Double(connections)), ("messages_per_connection", Double(messages)),
                ("in_flight", Double(window)), ("server_loops", Double(EchoBench.cores)),
                ("client_threads", Double(clientThreads)),
            ],
            columns: [Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate), threadsColumn, idleColumn, batchColumn],
            primary: "msgs_per_s", higherIsBetter: true, chart: true,
            rows: rows(
                connections: connections, messages: messages, window: window, clientThreads: clientThreads,
                idleMemory: true, blockingRow: true, timeout: settings.timeout))
        if connections < wanted {
            scenario.notes.append(
                "RLIMIT_NOFILE is \(limit) (raised to the hard limit): \(connections) connections instead of \(wanted), "
                    + "2 descriptors each (client and server in this process) + \(reserveDescriptors) spare")
        }
        scenario.notes.append(
            "threads: /proc/self/task with the connections open minus before the server started; "
                + "KiB/idle conn: /proc/self/statm RSS delta of the open idle connections / their count")
        scenario.summary = { result in
            var lines = targets(result, nio: 2, kernel: nil) + asyncTargets(result, nioAsync: 3, handler: nil)
            if let toby = tobyServer(result), toby.problem == nil {
                let threads = toby.medians["server_threads"] ?? .nan
                let kib = toby.medians["idle_kib_per_connection"] ?? .nan
                lines.append(
                    "issue 9 target: TobyServer threads \(fixed(threads, 0)) (≤ cores + 2 = \(EchoBench.cores + 2): "
                        + "\(threads <= Double(EchoBench.cores + 2) ? "met" : "MISSED")), "
                        + "\(fixed(kib, 2)) KiB per idle connection (≤ 8 KiB: \(kib <= 8 ? "met" : "MISSED"))")
            }
            return lines
        }
        return scenario
    }

    static func tobyServer(_ result: ScenarioResult) -> RowResult? {
        result.rows.first { $0.name.hasPrefix("TobyServer handler") }
    }

    /// The issue 10 targets: the async echo (task on its loop) against
    /// NIOAsyncChannel and against the loop handler.
    static func asyncTargets(_ result: ScenarioResult, nioAsync: Double, handler: Double?) -> [String] {
        guard let async = result.rows.first(where: { $0.name.contains("task on its loop") }), async.problem == nil,
            let nio = result.rows.first(where: { $0.name.contains("NIOAsyncChannel") }), nio.problem == nil
        else { return [] }
        var parts: [String] = []
        if let ratio = result.ratio(async, to: nio) {
            parts.append(
                "\(Table.times(ratio)) NIOAsyncChannel (≥ \(fixed(nioAsync, 0))×: \(ratio >= nioAsync ? "met" : "MISSED"))")
        }
        if let handler, let toby = tobyServer(result), let ratio = result.ratio(async, to: toby) {
            parts.append(
                "\(Table.times(ratio)) the loop handler (≥ \(fixed(handler, 1))×: \(ratio >= handler ? "met" : "MISSED"))")
        }
        if let pool = result.rows.first(where: { $0.name.contains("global pool") }), let ratio = result.ratio(pool, to: async) {
            parts.append("without executor preference \(Table.times(ratio)) with it")
        }
        return parts.isEmpty ? [] : ["issue 10 targets: async TobyServer.serve " + parts.joined(separator: ", ")]
    }

    /// The issue's throughput targets for the first row (TobyServer).
    static func targets(_ result: ScenarioResult, nio: Double, kernel: Double?) -> [String] {
        guard let toby = tobyServer(result) else { return [] }
        guard toby.problem == nil else { return ["issue 9 targets: TobyServer row failed"] }
        var parts: [String] = []
        if let ratio = result.ratio(toby, to: result.baseline(.nio)) {
            parts.append("\(Table.times(ratio)) SwiftNIO (≥ \(fixed(nio, 0))×: \(ratio >= nio ? "met" : "MISSED"))")
        }
        if let kernel, let ratio = result.ratio(toby, to: result.baseline(.kernel)) {
            parts.append("\(Table.times(ratio)) kernel echo (≥ \(fixed(kernel, 1))×: \(ratio >= kernel ? "met" : "MISSED"))")
        }
        return parts.isEmpty ? [] : ["issue 9 targets: TobyServer " + parts.joined(separator: ", ")]
    }
}
