/// What a ``TobyServer`` does with each connection, called on the
/// connection's event-loop thread.
///
/// The server makes one handler per connection (its `handler` factory), and
/// calls it only on that connection's loop thread, one call at a time, so a
/// handler keeps per-connection state in plain stored properties with no
/// lock. A handler must not block: every connection of its loop waits while
/// it runs. Work that blocks belongs on another thread, which replies with
/// ``TobyConnection/send(_:)-(UnsafeRawBufferPointer)`` (safe from any
/// thread).
///
/// ```swift
/// struct Echo: TobyServerHandler {
///     func received(_ messages: TobyMessages, on connection: TobyConnection) {
///         // Every complete message of this read, lent where it lies in the
///         // ring; sent back straight from there, in one sendmsg.
///         try? connection.send(contentsOf: messages)
///     }
/// }
/// ```
public protocol TobyServerHandler {
    /// The connection was accepted. Default: nothing.
    mutating func connectionOpened(_ connection: TobyConnection)

    /// Every complete message that one read brought, in order.
    ///
    /// The messages' bytes are lent: valid only during this call. Replies
    /// sent during the call are queued and written together right after it
    /// returns (one `sendmsg` for the replies of a whole read).
    mutating func received(_ messages: TobyMessages, on connection: TobyConnection)

    /// The peer ended its stream cleanly, after its last message was
    /// delivered. Default: ``TobyConnection/close()``, which sends every
    /// queued reply and then ends our side. A handler that still owes
    /// replies (computed elsewhere) may keep the connection open and close
    /// it later.
    mutating func inputEnded(on connection: TobyConnection)

    /// The connection is over and its descriptor closed; the last call.
    /// `error` is nil after a clean end (both sides closed, or an owner's
    /// ``TobyConnection/close()`` or ``TobyConnection/abort()``), otherwise
    /// why it ended: ``TobyError/frameTooLarge(length:limit:prefix:)``,
    /// ``TobyError/truncatedFrame(expected:received:)``,
    /// ``TobyError/timedOut(_:)``, or a ``TobyError/system(operation:errno:)``
    /// such as a reset. Every complete message before it was delivered.
    /// Default: nothing.
    mutating func connectionClosed(_ connection: TobyConnection, error: TobyError?)

    /// The server is shutting down and this connection outlived the grace
    /// period: no message will be delivered any more (what the peer still
    /// sends is read and discarded). Sends are still accepted: reply to what
    /// was delivered, then close. Default: ``TobyConnection/close()``, which
    /// sends every queued reply, ends our side and lingers until the peer
    /// ends. A connection still open when the server's
    /// ``TobyServer/Options/shutdownLinger`` runs out is reset.
    mutating func shouldQuiesce(on connection: TobyConnection)
}

extension TobyServerHandler {
    /// Does nothing.
    public mutating func connectionOpened(_ connection: TobyConnection) {}

    /// Closes the connection gracefully: queued replies go out first.
    public mutating func inputEnded(on connection: TobyConnection) {
        connection.close()
    }

    /// Does nothing.
    public mutating func connectionClosed(_ connection: TobyConnection, error: TobyError?) {}

    /// Closes the connection gracefully: queued replies go out first.
    public mutating func shouldQuiesce(on connection: TobyConnection) {
        connection.close()
    }
}
