#if canImport(Glibc)
import Glibc
#endif

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

extension TobyReceiver: AsyncSequence {
    /// The type of the messages.
    public typealias Element = [UInt8]
    /// The error that ends an asynchronous iteration.
    public typealias Failure = TobyError

    /// Asynchronous iteration: `for try await message in receiver { … }`.
    ///
    /// Buffered messages are returned without suspending. When the ring holds
    /// no complete message, the iterator reads without blocking and, if the
    /// socket is empty, suspends until a shared epoll thread reports it
    /// readable: no thread of the cooperative pool ever blocks on the socket.
    /// Cancelling the task ends the iteration with `nil`; unread messages stay
    /// in the receiver.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let receiver: TobyReceiver

        /// The next message, or `nil` at a clean end of stream or on
        /// cancellation.
        public mutating func next() async throws(TobyError) -> [UInt8]? {
            try await receiver.receiveAsync()
        }

        /// The next message, or `nil` at a clean end of stream or on
        /// cancellation.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(TobyError) -> [UInt8]? {
            try await receiver.receiveAsync()
        }
    }

    /// Returns an asynchronous iterator over the messages.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(receiver: self)
    }

    /// Waits, without blocking a thread, for the next message.
    ///
    /// - Returns: The message, or `nil` at a clean end of stream or if the
    ///   task was cancelled.
    /// - Throws: The error that ended the stream,
    ///   ``TobyError/timedOut(_:)`` when ``TobyConfiguration/readTimeout``
    ///   passed with no message, or ``TobyError/system(operation:errno:)``
    ///   when the process-wide readiness poller could not be started (no
    ///   descriptors or threads left; the receiver stays usable and the
    ///   next call tries again).
    public func receiveAsync() async throws(TobyError) -> [UInt8]? {
        let timeout = configuration.readTimeout
        let deadline = timeout.map { monotonicNanoseconds() &+ $0.clampedNanoseconds }
        while true {
            switch try receiveWithoutBlocking() {
            case .owned(let message): return message
            case .end: return nil
            default: break
            }
            if Task.isCancelled { return nil }
            if let timeout, let deadline, monotonicNanoseconds() >= deadline { throw .timedOut(timeout) }
            #if os(Linux)
            try await ReadinessPoller.waitReadable(socket.fd, deadline: deadline)
            #else
            _ = try socket.waitReadable(deadline: deadline)
            #endif
        }
    }

}
