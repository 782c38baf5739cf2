import NIOCore
import NIOPosix

/// The same length-field codec under `NIOAsyncChannel`: `for try await` on
/// inbound, `outbound.write` (and `write(contentsOf:)` for a batch).
enum NIOAsync {
    typealias Framed = NIOAsyncChannel<ByteBuffer, ByteBuffer>
    typealias Pair = (client: Framed, server: Framed)

    static func wrap(_ channel: Channel) -> EventLoopFuture<Framed> {
        channel.eventLoop.makeCompletedFuture {
            try NIO.addFraming(channel)
            return try Framed(wrappingChannelSynchronously: channel)
        }
    }

    /// `count` connected pairs (accept order is connect order).
    static func pairs(_ count: Int, multi: Bool = false) async throws -> [Pair] {
        let listener = try await NIO.serverBootstrap(multi ? NIO.serverGroupMulti : NIO.serverGroup)
            .bind(host: "127.0.0.1", port: 0) { wrap($0) }
        let port = listener.channel.localAddress!.port!
        var clients: [Framed] = []
        for _ in 0..<count {
            clients.append(
                try await NIO.clientBootstrap(multi ? NIO.clientGroupMulti : NIO.clientGroup)
                    .connect(host: "127.0.0.1", port: port) { wrap($0) })
        }
        let servers = try await listener.executeThenClose { connections in
            var accepted: [Framed] = []
            var iterator = connections.makeAsyncIterator()
            while accepted.count < count {
                guard let connection = try await iterator.next() else { throw BenchError.integrity("listener closed") }
                accepted.append(connection)
            }
            return accepted
        }
        return Array(zip(clients, servers))
    }

    static func buffers(_ payloads: Payloads) -> [ByteBuffer] {
        payloads.messages.map { ByteBuffer(bytes: $0) }
    }

    /// Writes `count` messages in batches of up to 256 with `write(contentsOf:)`.
    static func send(_ buffers: [ByteBuffer], count: Int, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        let full = (0..<256).map { buffers[$0 % buffers.count] }
        var sent = 0
        while sent < count {
            let n = min(256, count - sent)
            try await outbound.write(contentsOf: n == 256 ? full : Array(full.prefix(n)))
            sent += n
        }
    }

    /// Receives `count` messages; returns when the last one arrived.
    static func receive(
        _ payloads: Payloads, count: Int, from inbound: NIOAsyncChannelInboundStream<ByteBuffer>
    ) async throws -> UInt64 {
        var check = Checker(payloads)
        for try await buffer in inbound {
            buffer.withUnsafeReadableBytes { check.check($0) }
            if check.count == count { break }
        }
        let end = nowNanoseconds()
        try check.verify(expected: count)
        return end
    }

    /// One-way over one pair: a sending task and a receiving task.
    static func transfer(_ pair: Pair, _ payloads: Payloads, count: Int) async throws -> UInt64 {
        let buffers = buffers(payloads)
        return try await pair.client.executeThenClose { _, outbound in
            try await pair.server.executeThenClose { inbound, _ in
                try await withThrowingTaskGroup(of: UInt64.self) { group in
                    group.addTask {
                        try await send(buffers, count: count, to: outbound)
                        return 0
                    }
                    group.addTask { try await receive(payloads, count: count, from: inbound) }
                    var end: UInt64 = 0
                    for try await time in group { end = max(end, time) }
                    return end
                }
            }
        }
    }

    // MARK: Scenarios

    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        try runAsync(timeout: timeout) {
            let pair = try await pairs(1)[0]
            let start = nowNanoseconds()
            let end = try await transfer(pair, Payloads(size: size), count: count)
            return .throughput(messages: count, size: size, nanoseconds: end - start)
        }
    }

    /// Echo until the peer closes: `for try await` and `outbound.write`.
    static func echo(_ connection: Framed) async throws {
        try await connection.executeThenClose { inbound, outbound in
            for try await message in inbound { try await outbound.write(message) }
        }
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let buffers = buffers(payloads)
        let latencies = try runAsync(timeout: timeout) {
            let pair = try await pairs(1)[0]
            return try await withThrowingTaskGroup(of: LatencyRecorder?.self) { group in
                group.addTask {
                    try await echo(pair.server)
                    return nil
                }
                group.addTask {
                    try await pair.client.executeThenClose { inbound, outbound in
                        var latencies = LatencyRecorder(warmup: warmup)
                        var check = Checker(payloads)
                        var replies = inbound.makeAsyncIterator()
                        for seq in 0..<(warmup + count) {
                            let start = nowNanoseconds()
                            try await outbound.write(buffers[seq % buffers.count])
                            guard let reply = try await replies.next() else { break }
                            latencies.record(nowNanoseconds() - start)
                            reply.withUnsafeReadableBytes { check.check($0) }
                        }
                        try check.verify(expected: warmup + count)
                        return latencies
                    }
                }
                var result: LatencyRecorder?
                for try await latencies in group where latencies != nil { result = latencies }
                return result!
            }
        }
        return try latencies.sample(expected: count)
    }

    /// The client keeps `window` outstanding: one `outbound.write` per echo.
    static func pipelined(count: Int, window: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let buffers = buffers(payloads)
        let nanoseconds = try runAsync(timeout: timeout) {
            let pair = try await pairs(1)[0]
            return try await withThrowingTaskGroup(of: UInt64.self) { group in
                group.addTask {
                    try await echo(pair.server)
                    return 0
                }
                group.addTask {
                    try await pair.client.executeThenClose { inbound, outbound in
                        let start = nowNanoseconds()
                        var check = Checker(payloads)
                        var sent = min(window, count)
                        try await outbound.write(contentsOf: (0..<sent).map { buffers[$0 % buffers.count] })
                        for try await reply in inbound {
                            reply.withUnsafeReadableBytes { check.check($0) }
                            if sent < count {
                                try await outbound.write(buffers[sent % buffers.count])
                                sent += 1
                            }
                            if check.count == count { break }
                        }
                        let elapsed = nowNanoseconds() - start
                        try check.verify(expected: count)
                        return elapsed
                    }
                }
                var elapsed: UInt64 = 0
                for try await value in group { elapsed = max(elapsed, value) }
                return elapsed
            }
        }
        return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
    }

    /// Many connections: a sending and a receiving task per connection.
    static func manyConnections(connections count: Int, perConnection: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        return try runAsync(timeout: timeout) {
            let all = try await pairs(count, multi: true)
            let start = nowNanoseconds()
            let end = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for pair in all {
                    group.addTask { try await transfer(pair, payloads, count: perConnection) }
                }
                var end: UInt64 = 0
                for try await time in group { end = max(end, time) }
                return end
            }
            return .throughput(messages: count * perConnection, size: 64, nanoseconds: end - start)
        }
    }
}
