import Logging
import TobyTCP

/// Logs connection-level events with swift-log, of servers and of the
/// connections this process opens: a product of its own, so that the
/// `TobyTCP` library still depends on nothing.
///
/// ```swift
/// let logging = TobyLoggingObserver(logger: Logger(label: "echo"))
/// var options = TobyServer.Options()
/// options.observer = logging
/// let server = try TobyServer.listen(port: 0, options: options) { _ in Echo() }
/// let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port, observer: logging)
/// ```
///
/// What is logged, and at which level (nothing per message):
///
/// | Event | Level | Message |
/// |---|---|---|
/// | a connection accepted | `trace` | `connection opened` |
/// | a connect succeeded | `trace` | `connected` |
/// | a connect failed (refused, timed out, a name that does not resolve) | `debug` | `connect failed: ERROR` |
/// | a connection ended cleanly | `trace` | `connection closed` |
/// | a connection ended by an error (a bad peer, a reset, a timeout) | `debug` | `connection ended: ERROR` |
/// | `accept` failed (descriptors or memory ran out) | `warning` | `accept failed: ERROR` |
///
/// Metadata: `server.address` (the server's address; not for connections
/// this process opened), `network.peer.address` (the peer, or the address a
/// failed connect asked for), `toby.connection.id` (unique in the process);
/// when a connection ends also `toby.messages.received`,
/// `toby.messages.sent`, `toby.bytes.received`, `toby.bytes.sent`; and
/// `error.type` (the `TobyError` case) after an error. A blocking
/// `TobyMessenger` has no single end, so only its connect is logged.
public struct TobyLoggingObserver: TobyServerObserver, TobyClientObserver {
    /// Where the events go; its level filters them as usual.
    public let logger: Logger

    /// Logs to `logger`.
    public init(logger: Logger) {
        self.logger = logger
    }

    /// Logs `connection opened` at `trace`.
    public func connectionOpened(_ connection: TobyServerObserverEvent) {
        logger.trace("connection opened", metadata: metadata(connection))
    }

    /// Logs `connection closed` at `trace`, or `connection ended: …` at
    /// `debug` when an error ended it.
    public func connectionClosed(_ connection: TobyServerObserverEvent, error: TobyError?) {
        var metadata = metadata(connection)
        metadata["toby.messages.received"] = "\(connection.messagesReceived)"
        metadata["toby.messages.sent"] = "\(connection.messagesSent)"
        metadata["toby.bytes.received"] = "\(connection.bytesReceived)"
        metadata["toby.bytes.sent"] = "\(connection.bytesSent)"
        guard let error else {
            logger.trace("connection closed", metadata: metadata)
            return
        }
        metadata["error.type"] = "\(TobyLoggingObserver.kind(of: error))"
        logger.debug("connection ended: \(error)", metadata: metadata)
    }

    /// Logs `connected` at `trace`.
    public func connected(_ connection: TobyConnectionEvent) {
        logger.trace("connected", metadata: metadata(connection))
    }

    /// Logs `connect failed: …` at `debug`: the caller gets the error too,
    /// and decides whether it matters.
    public func connectFailed(address: String, error: TobyError) {
        logger.debug(
            "connect failed: \(error)",
            metadata: ["network.peer.address": "\(address)", "error.type": "\(TobyLoggingObserver.kind(of: error))"])
    }

    /// Logs `accept failed: …` at `warning`.
    public func acceptFailed(server: String, error: TobyError) {
        logger.warning(
            "accept failed: \(error)",
            metadata: ["server.address": "\(server)", "error.type": "\(TobyLoggingObserver.kind(of: error))"])
    }

    private func metadata(_ connection: TobyServerObserverEvent) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "network.peer.address": "\(connection.peer)",
            "toby.connection.id": "\(connection.id)",
        ]
        if !connection.server.isEmpty { metadata["server.address"] = "\(connection.server)" }
        return metadata
    }

    /// The error's case name, without its values: `frameTooLarge`, `system`…
    static func kind(of error: TobyError) -> String {
        switch error {
        case .frameTooLarge: return "frameTooLarge"
        case .truncatedFrame: return "truncatedFrame"
        case .alreadyStarted: return "alreadyStarted"
        case .closed: return "closed"
        case .endOfStream: return "endOfStream"
        case .timedOut: return "timedOut"
        case .writeTimedOut: return "writeTimedOut"
        case .connectTimedOut: return "connectTimedOut"
        case .system: return "system"
        case .systemAtAddress: return "systemAtAddress"
        case .outOfDescriptors: return "outOfDescriptors"
        case .unresolvableHost: return "unresolvableHost"
        case .unixPathTooLong: return "unixPathTooLong"
        case .invalidConfiguration: return "invalidConfiguration"
        case .alreadyReceiving: return "alreadyReceiving"
        }
    }
}
