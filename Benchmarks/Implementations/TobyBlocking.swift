import TobyTCP

/// TobyTCP through its public blocking API, as a user would call it.
enum Toby {
    /// Both ends of one loopback connection, started.
    struct Connection: @unchecked Sendable {
        let client: TobyMessenger
        let clientReceiver: TobyReceiver
        let server: TobyMessenger
        let serverReceiver: TobyReceiver
    }

    static func connections(_ count: Int) throws -> [Connection] {
        let listener = try TobyListener(host: "127.0.0.1", port: 0)
        defer { listener.close() }
        var result: [Connection] = []
        for _ in 0..<count {
            let client = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port)
            let server = try listener.accept()
            result.append(
                Connection(client: client, clientReceiver: try client.start(), server: server, serverReceiver: try server.start())
            )
        }
        return result
    }

    /// Runs `body` on `count` new connections and closes them after it
    /// returns. After a failure they are left open: a sender may still be
    /// blocked in one, and `close()` would wait for it.
    static func with<T>(_ count: Int, _ body: ([Connection]) throws -> T) throws -> T {
        let all = try connections(count)
        let result = try body(all)
        close(all)
        return result
    }

    static func close(_ connections: [Connection]) {
        for connection in connections {
            try? connection.client.close()
            try? connection.server.close()
            connection.clientReceiver.close()
            connection.serverReceiver.close()
        }
    }

    enum Sending { case batches, perMessage }
    enum Receiving { case copying, borrowing }

    /// Sends `messages` in order: `send(contentsOf:)` with up to `batch` at a
    /// time, or one `send(_:)` per message.
    static func send(_ payloads: Payloads, count: Int, through messenger: TobyMessenger, style: Sending, batch: Int = 256) throws
    {
        switch style {
        case .perMessage:
            for seq in 0..<count { try messenger.send(payloads.message(seq)) }
        case .batches:
            let full = payloads.batch(batch)
            var sent = 0
            while sent < count {
                let n = min(batch, count - sent)
                try messenger.send(contentsOf: n == batch ? full : Array(full.prefix(n)))
                sent += n
            }
        }
    }

    // MARK: Scenarios

    static func oneWay(size: Int, count: Int, sending: Sending, receiving: Receiving, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: size)
        return try with(1) { all in
            let connection = all[0]
            let checker = Box(Checker(payloads))
            let nanoseconds = try runThreads(
                timed: [
                    { try send(payloads, count: count, through: connection.client, style: sending) },
                    {
                        var check = Checker(payloads)
                        loop: for _ in 0..<count {
                            switch receiving {
                            case .copying:
                                guard let message = try connection.serverReceiver.receive() else { break loop }
                                check.check(message)
                            case .borrowing:
                                guard try connection.serverReceiver.receive({ check.check($0) }) != nil else { break loop }
                            }
                        }
                        checker.value = check
                    },
                ], timeout: timeout)
            try checker.value.verify(expected: count)
            return .throughput(messages: count, size: size, nanoseconds: nanoseconds)
        }
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try with(1) { all in
            let connection = all[0]
            let recorder = Box(LatencyRecorder(warmup: warmup))
            _ = try runThreads(
                timed: [
                    {
                        var latencies = LatencyRecorder(warmup: warmup)
                        var check = Checker(payloads)
                        for seq in 0..<(warmup + count) {
                            let start = nowNanoseconds()
                            try connection.client.send(payloads.message(seq))
                            guard let reply = try connection.clientReceiver.receive() else { break }
                            latencies.record(nowNanoseconds() - start)
                            check.check(reply)
                        }
                        try connection.client.close()
                        try check.verify(expected: warmup + count)
                        recorder.value = latencies
                    }
                ],
                background: [
                    { while let message = try connection.serverReceiver.receive() { try connection.server.send(message) } }
                ],
                timeout: timeout)
            return try recorder.value.sample(expected: count)
        }
    }

    /// The client keeps `window` messages outstanding: it waits for one
    /// reply, takes every reply already buffered with `tryReceive()`, and
    /// sends as many new messages in one `send(contentsOf:)`. The echo
    /// server batches the same way.
    static func pipelined(count: Int, window: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try with(1) { all in
            let connection = all[0]
            let nanoseconds = try runThreads(
                timed: [
                    {
                        let messenger = connection.client, receiver = connection.clientReceiver
                        var check = Checker(payloads)
                        var sent = min(window, count)
                        try messenger.send(contentsOf: payloads.batch(sent))
                        while check.count < count {
                            guard let first = try receiver.receive() else { break }
                            check.check(first)
                            var got = 1
                            while let reply = try receiver.tryReceive() {
                                check.check(reply)
                                got += 1
                            }
                            let n = min(got, count - sent)
                            if n > 0 {
                                try messenger.send(contentsOf: (sent..<(sent + n)).map { payloads.message($0) })
                                sent += n
                            }
                        }
                        try messenger.close()
                        try check.verify(expected: count)
                    }
                ],
                background: [{ try batchingEcho(connection) }],
                timeout: timeout)
            return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
        }
    }

    /// Echoes until the client closes, one `send(contentsOf:)` per burst.
    static func batchingEcho(_ connection: Connection) throws {
        let receiver = connection.serverReceiver
        while let first = try receiver.receive() {
            var batch = [first]
            var ended = false
            do {
                while let message = try receiver.tryReceive() { batch.append(message) }
            } catch .endOfStream {
                ended = true
            }
            try connection.server.send(contentsOf: batch)
            if ended { break }
        }
    }

    /// `threads` threads call `send(_:)` on one shared messenger.
    static func sharedSenders(threads: Int, perThread: Int, timeout: Double) throws -> Sample {
        return try with(1) { all in
            let connection = all[0]
            let checker = Box(TaggedChecker(streams: threads, size: 64))
            var bodies: [@Sendable () throws -> Void] = (0..<threads).map { thread in
                let payloads = Payloads(size: 64, tag: UInt8(thread))
                return { for seq in 0..<perThread { try connection.client.send(payloads.message(seq)) } }
            }
            bodies.append {
                var check = TaggedChecker(streams: threads, size: 64)
                for _ in 0..<(threads * perThread) {
                    guard try connection.serverReceiver.receive({ check.check($0) }) != nil else { break }
                }
                checker.value = check
            }
            let writes = WriteSyscalls.start()
            let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
            try checker.value.verify(expectedPerStream: perThread)
            return .shared(messages: threads * perThread, nanoseconds: nanoseconds, writes: writes)
        }
    }

    /// `connections` connections, one receiving thread each; `senderThreads`
    /// threads send `perConnection` messages on each in rounds of batches.
    static func manyConnections(connections count: Int, perConnection: Int, senderThreads: Int, timeout: Double) throws -> Sample
    {
        let payloads = Payloads(size: 64)
        return try with(count) { all in
            var bodies = senderBodies(all, perConnection: perConnection, senderThreads: senderThreads, payloads: payloads)
            for connection in all {
                bodies.append {
                    var check = Checker(payloads)
                    for _ in 0..<perConnection {
                        guard try connection.serverReceiver.receive({ check.check($0) }) != nil else { break }
                    }
                    try check.verify(expected: perConnection)
                }
            }
            let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
            return .throughput(messages: count * perConnection, size: 64, nanoseconds: nanoseconds)
        }
    }

    /// Sender threads for the many-connections scenario: each owns a slice
    /// of the connections and sends a batch on each in turn.
    static func senderBodies(
        _ all: [Connection], perConnection: Int, senderThreads: Int, payloads: Payloads
    ) -> [@Sendable () throws -> Void] {
        (0..<senderThreads).map { thread in
            let mine = stride(from: thread, to: all.count, by: senderThreads).map { all[$0].client }
            return {
                let full = payloads.batch(256)
                var sent = 0
                while sent < perConnection {
                    let n = min(256, perConnection - sent)
                    let batch = n == 256 ? full : Array(full.prefix(n))
                    for messenger in mine { try messenger.send(contentsOf: batch) }
                    sent += n
                }
            }
        }
    }
}
