import NIOCore
import NIOPosix

/// SwiftNIO's echo as NIO's examples write it, on a fresh
/// `MultiThreadedEventLoopGroup` of one loop per core: swift-nio-extras'
/// `LengthFieldBasedFrameDecoder` (8-byte little-endian) splits frames,
/// `EchoHandler` writes each back through `LengthFieldPrepender` and
/// flushes on `channelReadComplete` (see `NIO.server`).
final class NIOEchoServer: EchoServer {
    final class Counter: @unchecked Sendable {
        let lock = Lock()
        var value = 0
    }

    let group: MultiThreadedEventLoopGroup
    let channel: Channel
    private let counter = Counter()

    init(loops: Int) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        let counter = self.counter
        do {
            channel = try NIO.server(group) {
                counter.lock.withLock { counter.value += 1 }
                return EchoHandler()
            }
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var port: Int { channel.localAddress?.port ?? 0 }
    /// Channels initialised (accepted), open or not.
    var accepted: Int { counter.lock.withLock { counter.value } }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
