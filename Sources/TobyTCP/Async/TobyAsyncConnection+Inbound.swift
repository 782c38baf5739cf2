import CTobyFrame

extension TobyAsyncConnection {
    /// The inbound messages (``TobyAsyncConnection/messages``), each a view
    /// of its batch's storage.
    public typealias Messages = Inbound<ArraySlice<UInt8>>

    /// The inbound batches (``TobyAsyncConnection/batches``): every complete
    /// message one read brought.
    public typealias Batches = Inbound<TobyBatch>

    /// Inbound elements (messages or batches) as an `AsyncSequence`, ending
    /// with nil at a clean end of stream and throwing the connection's error
    /// after every element before it.
    public struct Inbound<Element: Sendable>: AsyncSequence, Sendable {
        let connection: TobyAsyncConnection
        /// Takes the next element, on the connection's loop.
        let take: @Sendable (TobyAsyncConnection) async throws -> Element?

        /// Starts iterating; a second iterator at the same time throws
        /// ``TobyError/alreadyReceiving`` from its first `next()`.
        public func makeAsyncIterator() -> Iterator {
            Iterator(connection: connection, take: take, claim: Claim(connection))
        }

        /// Iterates the elements.
        public struct Iterator: AsyncIteratorProtocol {
            let connection: TobyAsyncConnection
            let take: @Sendable (TobyAsyncConnection) async throws -> Element?
            let claim: Claim

            /// The next element, nil at the end of stream.
            public mutating func next() async throws -> Element? {
                guard claim.held else { throw TobyError.alreadyReceiving }
                let connection = self.connection
                let take = self.take
                return try await connection.onLoop { try await take(connection) }
            }
        }
    }

    /// The single-consumer right, held for an iterator's lifetime.
    final class Claim: Sendable {
        let connection: TobyAsyncConnection
        let held: Bool

        init(_ connection: TobyAsyncConnection) {
            self.connection = connection
            held = connection.claim()
        }

        deinit {
            if held { connection.releaseClaim() }
        }
    }
}

extension TobyBatch {
    /// The messages of `batch` from `index` on.
    init(remainderOf batch: TobyBatch, from index: Int) {
        let cut = batch.starts[index] - 8
        frames = Array(batch.frames[cut...])
        starts = batch.starts[index...].map { $0 - cut }
        byteOrder = batch.byteOrder
    }
}
