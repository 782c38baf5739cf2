extension TobyAsyncConnection {
    /// Sends one message given as a slice, such as an element of
    /// ``messages`` or of a ``TobyBatch``: echoing is
    /// `for try await message in connection.messages { try await connection.send(message) }`.
    ///
    /// Returns once the connection's queue has accepted the message, first
    /// suspending (never blocking a thread) while the queue is above its
    /// high-water mark, as ``send(_:)-([UInt8])`` does. The bytes are read
    /// where they lie: a small message is copied once, with its prefix, into
    /// the connection's output buffer, a large one once into storage of its
    /// own; no intermediate array is made.
    ///
    /// - Throws: ``TobyError/frameTooLarge(length:limit:prefix:)``,
    ///   ``TobyError/closed`` after a close, the connection's error,
    ///   ``TobyError/timedOut(_:)`` after `writeTimeout` without room (the
    ///   message was not accepted), or `CancellationError`.
    public func send(_ message: ArraySlice<UInt8>) async throws {
        try await onLoop {
            try await self.core.waitForOutput(.room)
            // On the loop, the connection queues the lent bytes at once.
            try message.withUnsafeBytes { bytes in try self.core.send(bytes) }
        }
    }
}
