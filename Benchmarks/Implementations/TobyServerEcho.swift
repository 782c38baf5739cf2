import TobyTCP

/// `TobyServer` with the handler API on a group of one loop per core: each
/// read's messages are forwarded as a batch, straight from the receive ring
/// (`toby echo`'s default).
final class TobyServerEcho: EchoServer {
    struct Echo: TobyServerHandler {
        func received(_ messages: TobyMessages, on connection: TobyConnection) {
            // Throws only once the connection is closing; nothing to answer then.
            try? connection.send(contentsOf: messages)
        }
    }

    let group: TobyEventLoopGroup
    let server: TobyServer
    /// Run by `stop()` before the server closes (a metrics reporter's stop).
    private var beforeStop: () -> Void = {}

    /// - Parameters:
    ///   - options: The server's options (an observer, say).
    ///   - attach: Given the listening server; returns what `stop()` runs first.
    init(loops: Int, options: TobyServer.Options = .init(), attach: ((TobyServer) -> () -> Void)? = nil) throws {
        group = try TobyEventLoopGroup(threads: loops)
        do {
            server = try TobyServer.listen(host: "127.0.0.1", port: 0, options: options, group: group) { _ in Echo() }
        } catch {
            group.shutdown()
            throw error
        }
        if let attach { beforeStop = attach(server) }
    }

    var port: Int { server.port }
    var accepted: Int { server.connectionCount }

    func stop() {
        beforeStop()
        server.close()
        group.shutdown()
    }
}
