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
}
