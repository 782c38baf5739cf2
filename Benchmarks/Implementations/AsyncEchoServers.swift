import NIOCore
import NIOPosix
import TobyTCP

/// `TobyServer.serve`: one task per connection, written the idiomatic way
/// (`toby echo --api async`), with the connection's loop as the task's
/// executor preference (the default) or on Swift's global pool.
final class TobyAsyncEcho: EchoServer {
    let group: TobyEventLoopGroup
    let server: TobyServer

    init(loops: Int, preferLoop: Bool) throws {
        group = try TobyEventLoopGroup(threads: loops)
        do {
            server = try TobyServer.serve(host: "127.0.0.1", port: 0, group: group, preferLoopExecutor: preferLoop) {
                connection in
                for try await batch in connection.batches {
                    try await connection.send(contentsOf: batch)
                }
            }
        } catch {
            group.shutdown()
            throw error
        }
    }

    var port: Int { server.port }
    var accepted: Int { server.connectionCount }

    func stop() {
        server.close()
        group.shutdown()
    }
}

/// SwiftNIO's async echo: `NIOAsyncChannel` with the same length-field
/// codec, a task per connection in a discarding task group, each writing
/// back every inbound frame (`for try await frame in inbound { try await
/// outbound.write(frame) }`), as NIO's async examples do.
final class NIOAsyncEchoServer: EchoServer {
    final class Counter: @unchecked Sendable {
        let lock = Lock()
        var value = 0
    }

    let group: MultiThreadedEventLoopGroup
    private let counter = Counter()
    private var task: Task<Void, Never>?
    private let finished = Latch(1)
    private(set) var port = 0

    init(loops: Int) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        let counter = self.counter
        let ready = Latch(1)
        final class Started: @unchecked Sendable {
            var port = 0  // written before the latch, read after it
            var error: (any Error)?
        }
        let box = Started()
        let group = self.group
        let finished = self.finished
        task = Task.detached {
            defer { finished.countDown() }
            do {
                let listener = try await NIO.serverBootstrap(group)
                    .bind(host: "127.0.0.1", port: 0) { NIOAsync.wrap($0) }
                box.port = listener.channel.localAddress?.port ?? 0
                ready.countDown()
                try await listener.executeThenClose { connections in
                    try await withThrowingDiscardingTaskGroup { tasks in
                        for try await connection in connections {
                            counter.lock.withLock { counter.value += 1 }
                            tasks.addTask {
                                try? await connection.executeThenClose { inbound, outbound in
                                    for try await frame in inbound { try await outbound.write(frame) }
                                }
                            }
                        }
                    }
                }
            } catch {
                box.error = error
                ready.countDown()
            }
        }
        guard ready.wait(seconds: 30) else { throw BenchError.integrity("NIOAsyncChannel server did not start") }
        if let error = box.error {
            try? group.syncShutdownGracefully()
            throw error
        }
        port = box.port
    }

    var accepted: Int { counter.lock.withLock { counter.value } }

    /// Cancels the accept loop and waits for it and its connection tasks to
    /// end before the group goes (else they schedule onto stopped loops).
    func stop() {
        task?.cancel()
        _ = finished.wait(seconds: 10)
        try? group.syncShutdownGracefully()
    }
}
