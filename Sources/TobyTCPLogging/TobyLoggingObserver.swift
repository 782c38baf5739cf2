import Logging
import TobyTCP

/// Logs a server's connection-level events with swift-log: a product of its
/// own, so that the `TobyTCP` library still depends on nothing.
///
/// ```swift
/// var options = TobyServer.Options()
/// options.observer = TobyLoggingObserver(logger: Logger(label: "echo"))
/// let server = try TobyServer.listen(port: 0, options: options) { _ in Echo() }
/// ```
///
/// What is logged, and at which level (nothing per message):
///
/// | Event | Level | Message |
/// |---|---|---|
/// | a connection accepted | `trace` | `connection opened` |
/// | a connection ended cleanly | `trace` | `connection closed` |
/// | a connection ended by an error (a bad peer, a reset, a timeout) | `debug` | `connection ended: ERROR` |
/// | `accept` failed (descriptors or memory ran out) | `warning` | `accept failed: ERROR` |
///
/// Metadata: `server.address` (the server's address), `network.peer.address`
/// (the peer), `toby.connection.id` (unique in the process); when a
/// connection ends also `toby.messages.received`, `toby.messages.sent`,
/// `toby.bytes.received`, `toby.bytes.sent`, and `error.type` (the
/// `TobyError` case) after an error.
public struct TobyLoggingObserver: TobyServerObserver {
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

    /// Logs `accept failed: …` at `warning`.
    public func acceptFailed(server: String, error: TobyError) {
        logger.warning(
            "accept failed: \(error)",
            metadata: ["server.address": "\(server)", "error.type": "\(TobyLoggingObserver.kind(of: error))"])
    }

    private func metadata(_ connection: TobyServerObserverEvent) -> Logger.Metadata {
        [
            "server.address": "\(connection.server)",
            "network.peer.address": "\(connection.peer)",
            "toby.connection.id": "\(connection.id)",
        ]
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
