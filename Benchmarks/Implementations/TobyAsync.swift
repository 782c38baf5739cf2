import TobyTCP

/// TobyTCP's async API on the event loops: the client is a
/// `TobyAsyncConnection` (`connect(host:port:group:)`, its task running with
/// the connection's loop as executor preference), the server a
/// `TobyServer.serve` task per connection on its loop (the default
/// preference). One group of one loop per core serves both sides, as in
/// `TobyServerEcho`. No thread of Swift's pool blocks on either side.
enum TobyAsync {
    /// Runs `body` with a group and a `serve` server on it (its port).
    static func with<T>(
        serve: @escaping @Sendable (TobyAsyncConnection) async throws -> Void,
        _ body: (TobyEventLoopGroup, Int) throws -> T
    ) throws -> T {
        let group = try TobyEventLoopGroup(threads: EchoBench.cores)
        defer { group.shutdown() }
        let server = try TobyServer.serve(host: "127.0.0.1", port: 0, group: group, serve)
        defer { server.close() }
        return try body(group, server.port)
    }

    /// Connects one client and runs `body` on it, with the connection's loop
    /// as the task's executor preference; closes it gracefully afterwards.
    static func client<T: Sendable>(
        group: TobyEventLoopGroup, port: Int, timeout: Double,
        _ body: @escaping @Sendable (TobyAsyncConnection) async throws -> T
    ) throws -> T {
        try runAsync(timeout: timeout) {
            let connection = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group)
            do {
                let result = try await withTaskExecutorPreference(connection.executor) { try await body(connection) }
                try await connection.close()
                return result
            } catch {
                connection.abort()
                throw error
            }
        }
    }

    /// Sends `count` messages in batches of 256 with `send(contentsOf:)`.
    static func send(_ payloads: Payloads, count: Int, through connection: TobyAsyncConnection) async throws {
        let full = payloads.batch(256)
        var sent = 0
        while sent < count {
            let n = min(256, count - sent)
            try await connection.send(contentsOf: n == 256 ? full : Array(full.prefix(n)))
            sent += n
        }
    }

    /// Echo task, per message: `for try await message in connection.messages`
    /// and `send(_:)`.
    @Sendable static func echo(_ connection: TobyAsyncConnection) async throws {
        for try await message in connection.messages { try await connection.send(Array(message)) }
    }

    /// Echo task, per read: `for try await batch in connection.batches` and
    /// one `send(contentsOf:)` (`toby echo --api async`).
    @Sendable static func batchingEcho(_ connection: TobyAsyncConnection) async throws {
        for try await batch in connection.batches { try await connection.send(contentsOf: batch) }
    }

    /// One-way: the client sends with `send(contentsOf:)`; the server's task
    /// checks each message of `for try await message in connection.messages`.
    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: size)
        let done = Latch(1)
        let failures = Failures()
        let received = Box<(checker: Checker, end: UInt64)?>(nil)
        return try with(serve: { connection in
            defer { done.countDown() }
            var check = Checker(payloads)
            do {
                for try await message in connection.messages {
                    message.withUnsafeBytes { check.check($0) }
                    if check.count == count { break }
                }
            } catch {
                failures.record(error)
            }
            received.value = (check, nowNanoseconds())
        }) { group, port in
            let start = try client(group: group, port: port, timeout: timeout) { connection in
                let start = nowNanoseconds()
                try await send(payloads, count: count, through: connection)
                return start
            }
            guard done.wait(seconds: timeout) else {
                throw BenchError.timeout("server task still receiving after \(Int(timeout)) s")
            }
            try failures.check()
            guard let received = received.value else { throw BenchError.integrity("the server task saw no connection") }
            try received.checker.verify(expected: count)
            return .throughput(messages: count, size: size, nanoseconds: received.end - start)
        }
    }

    /// Ping-pong: `send(_:)` and the next of `messages`, against `echo`.
    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try with(serve: echo) { group, port in
            let latencies = try client(group: group, port: port, timeout: timeout) { connection in
                var latencies = LatencyRecorder(warmup: warmup)
                var check = Checker(payloads)
                var replies = connection.messages.makeAsyncIterator()
                for seq in 0..<(warmup + count) {
                    let start = nowNanoseconds()
                    try await connection.send(payloads.message(seq))
                    guard let reply = try await replies.next() else { break }
                    latencies.record(nowNanoseconds() - start)
                    reply.withUnsafeBytes { check.check($0) }
                }
                try check.verify(expected: warmup + count)
                return latencies
            }
            return try latencies.sample(expected: count)
        }
    }

    /// The client keeps `window` outstanding. Per message: `messages` and one
    /// `send(_:)` per reply, against `echo`. Batched: `batches` and one
    /// `send(contentsOf:)` per batch, on both sides (against `batchingEcho`).
    static func pipelined(count: Int, window: Int, batched: Bool, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try with(serve: batched ? batchingEcho : echo) { group, port in
            let nanoseconds = try client(group: group, port: port, timeout: timeout) { connection in
                let start = nowNanoseconds()
                var check = Checker(payloads)
                var sent = min(window, count)
                try await connection.send(contentsOf: payloads.batch(sent))
                if batched {
                    for try await replies in connection.batches {
                        for reply in replies { reply.withUnsafeBytes { check.check($0) } }
                        let n = min(replies.count, count - sent)
                        if n > 0 {
                            try await connection.send(contentsOf: (sent..<(sent + n)).map { payloads.message($0) })
                            sent += n
                        }
                        if check.count >= count { break }
                    }
                } else {
                    for try await reply in connection.messages {
                        reply.withUnsafeBytes { check.check($0) }
                        if sent < count {
                            try await connection.send(payloads.message(sent))
                            sent += 1
                        }
                        if check.count == count { break }
                    }
                }
                let elapsed = nowNanoseconds() - start
                try check.verify(expected: count)
                return elapsed
            }
            return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
        }
    }

    /// Many connections, one way: a client task per connection sends
    /// `perConnection` messages in batches of 256; a server task per
    /// connection checks them. The clock runs from the first send until the
    /// last message arrived anywhere (connecting is not timed).
    static func manyConnections(connections count: Int, perConnection: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let done = Latch(count)
        let failures = Failures()
        let end = EndClock()
        return try with(serve: { connection in
            defer { done.countDown() }
            var check = Checker(payloads)
            do {
                for try await message in connection.messages {
                    message.withUnsafeBytes { check.check($0) }
                    if check.count == perConnection { break }
                }
                end.mark()
                try check.verify(expected: perConnection)
            } catch {
                failures.record(error)
            }
        }) { group, port in
            let clients = try runAsync(timeout: timeout) {
                try await withThrowingTaskGroup(of: TobyAsyncConnection.self) { tasks in
                    for _ in 0..<count {
                        tasks.addTask { try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group) }
                    }
                    var all: [TobyAsyncConnection] = []
                    for try await connection in tasks { all.append(connection) }
                    return all
                }
            }
            defer { clients.forEach { $0.abort() } }
            let start = nowNanoseconds()
            try runAsync(timeout: timeout) {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    for connection in clients {
                        tasks.addTask(executorPreference: connection.executor) {
                            try await send(payloads, count: perConnection, through: connection)
                            try await connection.flush()
                        }
                    }
                    try await tasks.waitForAll()
                }
            }
            guard done.wait(seconds: timeout) else {
                throw BenchError.timeout("server tasks still receiving after \(Int(timeout)) s")
            }
            try failures.check()
            return .throughput(messages: count * perConnection, size: 64, nanoseconds: end.value - start)
        }
    }
}
