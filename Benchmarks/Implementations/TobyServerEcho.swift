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

    init(loops: Int) throws {
        group = try TobyEventLoopGroup(threads: loops)
        do {
            server = try TobyServer.listen(host: "127.0.0.1", port: 0, group: group) { _ in Echo() }
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
