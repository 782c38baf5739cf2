import TobyTCP

/// TobyTCP with `for try await message in receiver` on the receiving side
/// (sending stays the blocking `send`, which only waits for the kernel).
enum TobyAsync {
    /// One-way: a sender thread with `send(contentsOf:)`, a receiving task.
    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: size)
        return try Toby.with(1) { all in
            let connection = all[0]
            let failures = Failures()
            let (sender, nanoseconds, checker) = try runAsync(timeout: timeout) {
                let start = nowNanoseconds()
                let sender = Worker {
                    do { try Toby.send(payloads, count: count, through: connection.client, style: .batches) } catch { failures.record(error) }
                }
                var check = Checker(payloads)
                for try await message in connection.serverReceiver {
                    check.check(message)
                    if check.count == count { break }
                }
                return (sender, nowNanoseconds() - start, check)
            }
            sender.join()
            try failures.check()
            try checker.verify(expected: count)
            return .throughput(messages: count, size: size, nanoseconds: nanoseconds)
        }
    }

    /// Echo server task: `for try await` and `send(_:)` per message.
    static func echo(_ connection: Toby.Connection) async throws {
        for try await message in connection.serverReceiver { try connection.server.send(message) }
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try Toby.with(1) { all in
            let connection = all[0]
            let latencies = try runAsync(timeout: timeout) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await echo(connection) }
                    var latencies = LatencyRecorder(warmup: warmup)
                    var check = Checker(payloads)
                    var replies = connection.clientReceiver.makeAsyncIterator()
                    for seq in 0..<(warmup + count) {
                        let start = nowNanoseconds()
                        try connection.client.send(payloads.message(seq))
                        guard let reply = try await replies.next() else { break }
                        latencies.record(nowNanoseconds() - start)
                        check.check(reply)
                    }
                    try connection.client.close()
                    try await group.waitForAll()
                    try check.verify(expected: warmup + count)
                    return latencies
                }
            }
            return try latencies.sample(expected: count)
        }
    }

    /// Echo server task: `receiveAvailable()` (async) and one
    /// `send(contentsOf:)` per burst.
    static func batchingEcho(_ connection: Toby.Connection) async throws {
        while case let batch = try await connection.serverReceiver.receiveAvailable(), !batch.isEmpty {
            try connection.server.send(contentsOf: batch)
        }
    }

    /// The client keeps `window` outstanding. Per message: `for try await`
    /// and one `send(_:)` per reply, against `echo`. Batched: async
    /// `receiveAvailable()` and one `send(contentsOf:)` per burst, on both
    /// sides.
    static func pipelined(count: Int, window: Int, batched: Bool, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try Toby.with(1) { all in
            let connection = all[0]
            let nanoseconds = try runAsync(timeout: timeout) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await batched ? batchingEcho(connection) : echo(connection) }
                    let start = nowNanoseconds()
                    var check = Checker(payloads)
                    var sent = min(window, count)
                    try connection.client.send(contentsOf: payloads.batch(sent))
                    if batched {
                        while check.count < count {
                            let replies = try await connection.clientReceiver.receiveAvailable()
                            if replies.isEmpty { break }
                            for reply in replies { check.check(reply) }
                            let n = min(replies.count, count - sent)
                            if n > 0 {
                                try connection.client.send(contentsOf: (sent..<(sent + n)).map { payloads.message($0) })
                                sent += n
                            }
                        }
                    } else {
                        for try await reply in connection.clientReceiver {
                            check.check(reply)
                            if sent < count {
                                try connection.client.send(payloads.message(sent))
                                sent += 1
                            }
                            if check.count == count { break }
                        }
                    }
                    let elapsed = nowNanoseconds() - start
                    try connection.client.close()
                    try await group.waitForAll()
                    try check.verify(expected: count)
                    return elapsed
                }
            }
            return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
        }
    }

    /// Many connections: sender threads as in the blocking variant, one
    /// receiving task per connection.
    static func manyConnections(connections count: Int, perConnection: Int, senderThreads: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try Toby.with(count) { all in
            let failures = Failures()
            let bodies = Toby.senderBodies(all, perConnection: perConnection, senderThreads: senderThreads, payloads: payloads)
            let (senders, nanoseconds) = try runAsync(timeout: timeout) {
                let start = nowNanoseconds()
                let senders = bodies.map { body in
                    Worker { do { try body() } catch { failures.record(error) } }
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for connection in all {
                        group.addTask {
                            var check = Checker(payloads)
                            for try await message in connection.serverReceiver {
                                check.check(message)
                                if check.count == perConnection { break }
                            }
                            try check.verify(expected: perConnection)
                        }
                    }
                    try await group.waitForAll()
                }
                return (senders, nowNanoseconds() - start)
            }
            for sender in senders { sender.join() }
            try failures.check()
            return .throughput(messages: count * perConnection, size: 64, nanoseconds: nanoseconds)
        }
    }
}
