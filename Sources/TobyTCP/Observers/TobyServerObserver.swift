/// Hears a server's connection-level events (never one per message): the
/// seam for logging and tracing, so that `TobyTCP` itself depends on nothing.
/// The `TobyTCPLogging` product implements it with swift-log.
///
/// Calls come from the loop thread that owns the connection (or that
/// accepted it) and must not block. Set one with
/// ``TobyServer/Options/observer``; without one nothing is called and
/// nothing is spent.
public protocol TobyServerObserver: Sendable {
    /// A connection was accepted. `id` is unique within the process.
    func connectionOpened(_ connection: TobyServerObserverEvent)

    /// A connection ended: `error` is nil after a clean end, otherwise why
    /// (the same error its handler's `connectionClosed` gets).
    func connectionClosed(_ connection: TobyServerObserverEvent, error: TobyError?)

    /// `accept` failed (descriptors or memory ran out); the server goes on.
    func acceptFailed(server: String, error: TobyError)
}

/// What an observer is told about a connection.
public struct TobyServerObserverEvent: Sendable, Equatable {
    /// A process-wide id of the connection.
    public let id: UInt64
    /// The peer's address, as ``TobyConnection/peer``.
    public let peer: String
    /// The server's address, as ``TobyServer/address``; empty for a
    /// connection this process opened (``TobyClientObserver``).
    public let server: String
    /// Messages delivered to the application so far.
    public let messagesReceived: Int
    /// Messages accepted for sending so far.
    public let messagesSent: Int
    /// Bytes read off the socket so far, prefixes included.
    public let bytesReceived: Int
    /// Bytes handed to the kernel so far, prefixes included.
    public let bytesSent: Int
}
