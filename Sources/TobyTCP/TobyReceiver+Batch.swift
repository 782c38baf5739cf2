extension TobyReceiver {
    /// Waits for the next message, then returns it together with every
    /// complete message already buffered behind it (up to `maxCount`).
    ///
    /// This is how a pipelined server answers in as few syscalls as the
    /// kernel allows: one receive wakes it, the read that brought the first
    /// message usually brought many more, and one
    /// ``TobyMessenger/send(contentsOf:)`` answers them all:
    ///
    /// ```swift
    /// while case let batch = try receiver.receiveAvailable(), !batch.isEmpty {
    ///     try messenger.send(contentsOf: batch)
    /// }
    /// ```
    ///
    /// - Parameter maxCount: The most messages returned at once (at least 1).
    /// - Returns: One or more messages in order, or an empty array once the
    ///   peer has closed cleanly and everything was delivered.
    /// - Throws: As ``receive()``. An error that ends the stream after some
    ///   messages were collected is thrown by the next call, so the messages
    ///   before it are delivered first.
    public func receiveAvailable(maxCount: Int = 512) throws(TobyError) -> [[UInt8]] {
        precondition(maxCount >= 1, "maxCount must be at least 1")
        guard let first = try receive() else { return [] }
        return collectBuffered(after: first, maxCount: maxCount)
    }

    /// The asynchronous form of `receiveAvailable(maxCount:)`: waits
    /// without blocking a thread, then returns the first message with every
    /// complete message already buffered behind it.
    ///
    /// ```swift
    /// while case let batch = try await receiver.receiveAvailable(), !batch.isEmpty {
    ///     try messenger.send(contentsOf: batch)
    /// }
    /// ```
    ///
    /// - Returns: One or more messages, or an empty array at a clean end of
    ///   stream or if the task was cancelled.
    public func receiveAvailable(maxCount: Int = 512) async throws(TobyError) -> [[UInt8]] {
        precondition(maxCount >= 1, "maxCount must be at least 1")
        guard let first = try await receiveAsync() else { return [] }
        return collectBuffered(after: first, maxCount: maxCount)
    }
}
