import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// SwiftNIO with swift-nio-extras' length-field codec and handlers written
/// the way NIO's examples write them. Client and server run on event loop
/// groups of their own (one thread each; as many as cores for the
/// many-connections scenario).
enum NIO {
    static let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    static let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    static let serverGroupMulti = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
    static let clientGroupMulti = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)

    /// The decoder and prepender, 8-byte little-endian length field.
    static func addFraming(_ channel: Channel) throws {
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(
            ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .eightBytes, lengthFieldEndianness: .little)))
        try sync.addHandler(LengthFieldPrepender(lengthFieldBitLength: .eightBytes, lengthFieldEndianness: .little))
    }

    static func serverBootstrap(_ group: EventLoopGroup) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator())
    }

    static func clientBootstrap(_ group: EventLoopGroup) -> ClientBootstrap {
        ClientBootstrap(group: group).channelOption(.tcpOption(.tcp_nodelay), value: 1)
    }

    /// A server whose accepted channels get framing plus `handler(channel)`.
    static func server(
        _ group: EventLoopGroup = serverGroup, _ handler: @escaping @Sendable () -> ChannelHandler
    ) throws -> Channel {
        try serverBootstrap(group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try addFraming(channel)
                    try channel.pipeline.syncOperations.addHandler(handler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    static func client(_ group: EventLoopGroup = clientGroup, port: Int, _ handler: ChannelHandler & Sendable) throws -> Channel {
        try clientBootstrap(group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try addFraming(channel)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
    }

    static func port(_ server: Channel) -> Int { server.localAddress!.port! }

    // MARK: Scenarios

    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: size)
        let done = Latch(1), end = EndClock()
        let counter = FrameCounter(Checker(payloads), expected: count, done: done, end: end)
        let server = try server { counter }
        defer { try? server.close().wait() }
        let sender = BatchSender(payloads, count: count)
        let client = try client(port: port(server), sender)
        defer { try? client.close().wait() }
        let start = nowNanoseconds()
        sender.start(on: client)
        guard done.wait(seconds: timeout) else { throw BenchError.timeout("\(counter.check.count) of \(count) messages arrived") }
        try counter.check.verify(expected: count)
        return .throughput(messages: count, size: size, nanoseconds: end.value - start)
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let server = try server { EchoHandler() }
        defer { try? server.close().wait() }
        let done = Latch(1)
        let pinger = PingClient(payloads, count: count, warmup: warmup, done: done)
        let client = try client(port: port(server), pinger)
        defer { try? client.close().wait() }
        pinger.start(on: client)
        guard done.wait(seconds: timeout) else { throw BenchError.timeout("ping-pong did not finish") }
        try pinger.check.verify(expected: warmup + count)
        return try pinger.latencies.sample(expected: count)
    }

    static func pipelined(count: Int, window: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let server = try server { EchoHandler() }
        defer { try? server.close().wait() }
        let done = Latch(1), end = EndClock()
        let pipeliner = PipelineClient(payloads, count: count, window: window, done: done, end: end)
        let client = try client(port: port(server), pipeliner)
        defer { try? client.close().wait() }
        let start = nowNanoseconds()
        pipeliner.start(on: client)
        guard done.wait(seconds: timeout) else { throw BenchError.timeout("\(pipeliner.check.count) of \(count) echoes arrived") }
        try pipeliner.check.verify(expected: count)
        return .throughput(messages: count, size: 64, nanoseconds: end.value - start)
    }

    enum SharedStyle {
        /// `writeAndFlush` per message from each thread, waiting on every
        /// 1024th write's future for backpressure.
        case writeAndFlush
        /// Each thread hands 256 writes and one flush to the event loop in
        /// one `execute`, waiting on every 4th batch.
        case batches
    }

    /// `threads` threads write to one Channel from outside its event loop.
    static func sharedSenders(threads: Int, perThread: Int, style: SharedStyle, timeout: Double) throws -> Sample {
        let done = Latch(1), end = EndClock()
        let counter = FrameCounter(TaggedChecker(streams: threads, size: 64), expected: threads * perThread, done: done, end: end)
        let server = try server { counter }
        defer { try? server.close().wait() }
        let channel = try clientBootstrap(clientGroup)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try addFraming(channel) } }
            .connect(host: "127.0.0.1", port: port(server)).wait()
        defer { try? channel.close().wait() }
        let bodies: [@Sendable () throws -> Void] = (0..<threads).map { thread in
            let buffers = Payloads(size: 64, tag: UInt8(thread)).messages.map { ByteBuffer(bytes: $0) }
            switch style {
            case .writeAndFlush:
                return {
                    for seq in 0..<perThread {
                        let buffer = buffers[seq % buffers.count]
                        if seq % 1024 == 1023 || seq == perThread - 1 {
                            try channel.writeAndFlush(buffer).wait()
                        } else {
                            channel.writeAndFlush(buffer, promise: nil)
                        }
                    }
                }
            case .batches:
                return {
                    var seq = 0
                    var batchIndex = 0
                    while seq < perThread {
                        let batch = (seq..<min(seq + 256, perThread)).map { buffers[$0 % buffers.count] }
                        seq += batch.count
                        batchIndex += 1
                        let promise = channel.eventLoop.makePromise(of: Void.self)
                        channel.eventLoop.execute {
                            for buffer in batch.dropLast() { channel.write(buffer, promise: nil) }
                            channel.writeAndFlush(batch.last!, promise: promise)
                        }
                        if batchIndex % 4 == 0 || seq == perThread { try promise.futureResult.wait() }
                    }
                }
            }
        }
        let writes = WriteSyscalls.start()
        let start = nowNanoseconds()
        _ = try runThreads(timed: bodies, timeout: timeout)
        guard done.wait(seconds: timeout) else { throw BenchError.timeout("\(counter.check.total) messages arrived") }
        try counter.check.verify(expectedPerStream: perThread)
        return .shared(messages: threads * perThread, nanoseconds: end.value - start, writes: writes)
    }

    /// Many connections, each with a `BatchSender` and a `FrameCounter`.
    static func manyConnections(connections count: Int, perConnection: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let done = Latch(count), end = EndClock()
        let counters = Box<[FrameCounter<Checker>]>([])
        let lock = Lock()
        let server = try server(serverGroupMulti) {
            let counter = FrameCounter(Checker(payloads), expected: perConnection, done: done, end: end)
            lock.withLock { counters.value.append(counter) }
            return counter
        }
        defer { try? server.close().wait() }
        var clients: [(Channel, BatchSender)] = []
        defer { for (channel, _) in clients { try? channel.close().wait() } }
        for _ in 0..<count {
            let sender = BatchSender(payloads, count: perConnection)
            clients.append((try client(clientGroupMulti, port: port(server), sender), sender))
        }
        // Every accepted channel has its counter before the clock starts.
        let deadline = nowNanoseconds() + UInt64(timeout * 1e9)
        while lock.withLock({ counters.value.count }) < count {
            if nowNanoseconds() > deadline { throw BenchError.timeout("server accepted too few connections") }
            usleep(1000)
        }
        let start = nowNanoseconds()
        for (channel, sender) in clients { sender.start(on: channel) }
        guard done.wait(seconds: timeout) else { throw BenchError.timeout("not every connection got its messages") }
        for counter in lock.withLock({ counters.value }) { try counter.check.verify(expected: perConnection) }
        return .throughput(messages: count * perConnection, size: 64, nanoseconds: end.value - start)
    }
}
