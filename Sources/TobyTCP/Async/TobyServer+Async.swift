import CTobyFrame

extension TobyServer {
    /// Listens on a TCP address and serves each connection with an async
    /// `body`, in a task of its own started on the connection's loop.
    ///
    /// ```swift
    /// let server = try TobyServer.serve(port: 0) { connection in
    ///     for try await batch in connection.batches {
    ///         try await connection.send(contentsOf: batch)
    ///     }
    /// }
    /// ```
    ///
    /// When `body` returns (or throws), the connection is closed gracefully:
    /// everything it sent goes out, then the stream ends.
    ///
    /// - Parameters:
    ///   - host: A numeric address or a name; `"0.0.0.0"` or `"::"` for all.
    ///   - port: The port; 0 picks a free one (read it from ``port``).
    ///   - configuration: Framing, limits and timeouts of every connection.
    ///   - options: Back-pressure and backlog.
    ///   - group: The loops to serve on; nil makes a group the server owns.
    ///   - preferLoopExecutor: run each connection's task with its loop as
    ///     executor preference (default), so I/O resumes it on the loop's
    ///     thread without a hop; false runs it on Swift's global pool.
    ///   - body: Serves one connection.
    /// - Throws: As ``listen(host:port:configuration:options:group:handler:)``.
    public static func serve(
        host: String = "127.0.0.1", port: Int, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil, preferLoopExecutor: Bool = true,
        _ body: @escaping @Sendable (TobyAsyncConnection) async throws -> Void
    ) throws(TobyError) -> TobyServer {
        try listen(host: host, port: port, configuration: configuration, options: options, group: group) { _ in
            AsyncBridge(body: body, preferLoop: preferLoopExecutor, connection: nil)
        }
    }

    /// Listens on a Unix domain socket and serves each connection with an
    /// async `body` (see ``serve(host:port:configuration:options:group:preferLoopExecutor:_:)``).
    ///
    /// - Parameters:
    ///   - unixPath: The socket's path; it must not exist, and ``close(gracePeriod:)`` removes it.
    ///   - configuration: Framing, limits and timeouts of every connection.
    ///   - options: Back-pressure and backlog.
    ///   - group: The loops to serve on; nil makes a group the server owns.
    ///   - preferLoopExecutor: as for the TCP form.
    ///   - body: Serves one connection.
    public static func serve(
        unixPath: String, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil, preferLoopExecutor: Bool = true,
        _ body: @escaping @Sendable (TobyAsyncConnection) async throws -> Void
    ) throws(TobyError) -> TobyServer {
        try listen(unixPath: unixPath, configuration: configuration, options: options, group: group) { _ in
            AsyncBridge(body: body, preferLoop: preferLoopExecutor, connection: nil)
        }
    }
}

/// The handler that connects a loop connection to its async side.
struct AsyncBridge: TobyServerHandler {
    let body: @Sendable (TobyAsyncConnection) async throws -> Void
    let preferLoop: Bool
    var connection: TobyAsyncConnection?

    mutating func connectionOpened(_ core: TobyConnection) {
        let connection = TobyAsyncConnection(core: core)
        self.connection = connection
        let body = self.body
        Task(executorPreference: preferLoop ? core.loop : nil) {
            do {
                try await body(connection)
                try await connection.close(discardingInput: true)
            } catch {
                // The body's own failure (or a connection error it let
                // through) ends the connection; queued output still goes out.
                try? await connection.close(discardingInput: true)
            }
        }
    }

    func received(_ messages: TobyMessages, on core: TobyConnection) {
        connection?.loopReceived(messages)
    }

    func inputEnded(on core: TobyConnection) {
        // The async side decides when to close (its task ends, or close()).
        connection?.loopEnded(nil)
    }

    func connectionClosed(_ core: TobyConnection, error: TobyError?) {
        connection?.loopEnded(error)
    }

    func shouldQuiesce(on core: TobyConnection) {
        // The task closes the connection once it has seen the end.
        connection?.loopQuiesce()
    }
}
