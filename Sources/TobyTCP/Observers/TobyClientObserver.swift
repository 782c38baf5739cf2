/// Hears the connection-level events of connections this process opens
/// (never one per message): ``TobyMessenger/connect(host:port:configuration:observer:)``,
/// ``TobyAsyncConnection/connect(host:port:configuration:group:timeout:backPressure:observer:)``
/// and their Unix-socket forms. The `TobyTCPLogging` product implements it
/// with swift-log, as it does ``TobyServerObserver``.
///
/// Calls must not block: `connected` and `connectFailed` come from the
/// connecting thread or task (an async connection's `connected` from its
/// loop thread), `connectionClosed` from the loop thread of an async
/// connection. Every method has an empty default, so an observer implements
/// only what it wants.
public protocol TobyClientObserver: Sendable {
    /// A connect succeeded; `connection.server` is empty, `connection.peer`
    /// is the address connected to, and `connection.id` is unique within the
    /// process (among servers' connections too).
    func connected(_ connection: TobyConnectionEvent)

    /// A connect failed: `address` is what was asked for (`host:port` or
    /// `unix:/path`), `error` what the connect throws.
    func connectFailed(address: String, error: TobyError)

    /// An async connection ended: `error` is nil after a clean end, as for
    /// ``TobyServerObserver/connectionClosed(_:error:)``. A blocking
    /// ``TobyMessenger`` has no single end (its owner closes each side) and
    /// does not report one; its figures are in ``TobyMessenger/statistics``.
    func connectionClosed(_ connection: TobyConnectionEvent, error: TobyError?)
}

extension TobyClientObserver {
    /// Does nothing.
    public func connected(_ connection: TobyConnectionEvent) {}
    /// Does nothing.
    public func connectFailed(address: String, error: TobyError) {}
    /// Does nothing.
    public func connectionClosed(_ connection: TobyConnectionEvent, error: TobyError?) {}
}

/// What an observer is told about a connection: a server's (see
/// ``TobyServerObserver``) or one this process opened (``TobyClientObserver``).
public typealias TobyConnectionEvent = TobyServerObserverEvent

/// Lets a client connection's loop core report to a ``TobyClientObserver``
/// through the server observer seam the loop already calls.
struct ClientObserverBridge: TobyServerObserver {
    let observer: any TobyClientObserver

    func connectionOpened(_ connection: TobyServerObserverEvent) { observer.connected(connection) }

    func connectionClosed(_ connection: TobyServerObserverEvent, error: TobyError?) {
        observer.connectionClosed(connection, error: error)
    }

    func acceptFailed(server: String, error: TobyError) {}  // a client accepts nothing
}
