extension TobyConnection {
    /// What one connection has carried so far: of a ``TobyConnection`` (its
    /// ``statistics`` in a handler), a ``TobyAsyncConnection``
    /// (``TobyAsyncConnection/statistics()``) or a ``TobyMessenger``
    /// (``TobyMessenger/statistics``).
    public struct Statistics: Sendable, Equatable {
        /// Messages delivered to the application.
        public var messagesReceived = 0
        /// Messages accepted for sending.
        public var messagesSent = 0
        /// Bytes read off the socket, prefixes included.
        public var bytesReceived = 0
        /// Bytes handed to the kernel, prefixes included.
        public var bytesSent = 0
        /// Bytes queued and not yet taken by the kernel.
        public var queuedBytes = 0
        /// When the connection was accepted or connected.
        public var openedAt: ContinuousClock.Instant = .now

        /// Empty statistics, opened now.
        public init() {}
    }

    /// This connection's statistics, on its loop thread (in a handler): nil
    /// on any other thread, where the loop-only counters cannot be read
    /// (an async connection has ``TobyAsyncConnection/statistics()``).
    public var statistics: Statistics? {
        guard loop.isCurrent else { return nil }
        var figures = ownFigures
        figures.queuedBytes = output.pendingBytes
        return figures
    }

    // The per-message counting below compiles to nothing with
    // `-Xswiftc -DTOBY_NO_STATISTICS`, only so that
    // Scripts/statistics-overhead.sh can measure what it costs.

    @inline(__always)
    func countReceived(bytes: Int) {
        #if !TOBY_NO_STATISTICS
        counters.figures.bytesReceived &+= bytes
        ownFigures.bytesReceived &+= bytes
        #endif
    }

    /// After a fill of the frame reader: counts what it read since the last.
    @inline(__always)
    func countReaderBytes() {
        #if !TOBY_NO_STATISTICS
        let total = reader.pointee.bytes_read
        countReceived(bytes: Int(truncatingIfNeeded: total &- readerBytesCounted))
        readerBytesCounted = total
        #endif
    }

    @inline(__always)
    func countDelivered(_ messages: Int) {
        #if !TOBY_NO_STATISTICS
        counters.figures.messagesReceived &+= messages
        ownFigures.messagesReceived &+= messages
        #endif
    }

    @inline(__always)
    func countSent(_ messages: Int) {
        #if !TOBY_NO_STATISTICS
        counters.figures.messagesSent &+= messages
        ownFigures.messagesSent &+= messages
        #endif
    }

    @inline(__always)
    func countWritten(bytes: Int) {
        #if !TOBY_NO_STATISTICS
        counters.figures.bytesSent &+= bytes
        ownFigures.bytesSent &+= bytes
        #endif
    }

    /// What an observer is told about this connection now.
    var observerEvent: TobyServerObserverEvent {
        TobyServerObserverEvent(
            id: id, peer: peer, server: server?.address ?? "", messagesReceived: ownFigures.messagesReceived,
            messagesSent: ownFigures.messagesSent, bytesReceived: ownFigures.bytesReceived,
            bytesSent: ownFigures.bytesSent)
    }
}

extension TobyAsyncConnection {
    /// This connection's statistics (read on its loop).
    public func statistics() async throws -> TobyConnection.Statistics {
        try await onLoop { self.core.statistics ?? TobyConnection.Statistics() }
    }
}
