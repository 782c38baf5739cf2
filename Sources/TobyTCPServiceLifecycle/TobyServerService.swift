import ServiceLifecycle
import TobyTCP

/// A ``TobyServer`` as a swift-service-lifecycle `Service`.
///
/// `run()` serves until the service group shuts down. On graceful shutdown
/// the server stops accepting, every connection sends what it had accepted
/// and ends its stream, and connections still open after `gracePeriod` are
/// aborted; then `run()` returns. Cancelling `run()` does the same with no
/// grace period.
///
/// ```swift
/// let server = try TobyServer.serve(port: 15235) { connection in
///     for try await batch in connection.batches {
///         try await connection.send(contentsOf: batch)
///     }
/// }
/// let group = ServiceGroup(
///     services: [TobyServerService(server: server)],
///     gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
public struct TobyServerService: Service {
    /// The server this service runs.
    public let server: TobyServer
    /// How long connections may take to drain on graceful shutdown.
    public let gracePeriod: Duration

    /// Wraps a server that is already listening.
    public init(server: TobyServer, gracePeriod: Duration = .seconds(5)) {
        self.server = server
        self.gracePeriod = gracePeriod
    }

    /// Serves until graceful shutdown or cancellation, then closes the server.
    public func run() async throws {
        let server = self.server
        let gracePeriod = self.gracePeriod
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await server.waitUntilClosed()
            } onGracefulShutdown: {
                Task { await server.shutdown(gracePeriod: gracePeriod) }
            }
        } onCancel: {
            Task { await server.shutdown(gracePeriod: .zero) }
        }
    }
}
