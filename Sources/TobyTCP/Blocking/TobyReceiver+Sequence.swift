extension TobyReceiver: Sequence {
    /// Blocking iteration: `for message in receiver { … }`.
    ///
    /// A `Sequence` cannot throw, so iteration ends both at a clean end of
    /// stream and at the first error; ``TobyReceiver/error`` then tells which
    /// (`nil` for a clean end), and ``TobyReceiver/receive()`` throws the
    /// error again. Use `while let message = try receiver.receive()` when
    /// errors should propagate by themselves.
    public struct Iterator: IteratorProtocol {
        let receiver: TobyReceiver

        /// The next message, or `nil` at the end of the stream or an error.
        public mutating func next() -> [UInt8]? {
            do {
                return try receiver.receive()
            } catch {
                return nil
            }
        }
    }

    /// Returns a blocking iterator over the messages.
    public func makeIterator() -> Iterator {
        Iterator(receiver: self)
    }
}
