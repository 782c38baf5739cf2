import CTobyFrame
import Glibc

/// A connection for async code, served by an event loop.
///
/// Inbound messages arrive as an `AsyncSequence` (``messages``, or
/// ``batches``: everything one read brought, at once); sends suspend, never
/// block a thread, while the connection's queue is above its high-water
/// mark. Every operation runs on the connection's loop thread: a task that
/// prefers the loop as its executor (the task ``TobyServer/serve(host:port:configuration:options:group:preferLoopExecutor:_:)``
/// starts for each connection, by default) is resumed there by the I/O it
/// waits for, with no thread hop; any other task hops to the loop and back.
///
/// One consumer at a time: a second task iterating the same connection
/// gets ``TobyError/alreadyReceiving`` at once. Cancellation of a waiting
/// receive, send or connect throws `CancellationError`, distinct from the
/// end of stream (`nil`) and from ``TobyError``.
public final class TobyAsyncConnection: @unchecked Sendable {
    let core: TobyConnection
    var loop: EventLoop { core.loop }

    /// The peer's address as text, as for ``TobyMessenger/peer``.
    public var peer: String { core.peer }

    /// The connection's configuration.
    public var configuration: TobyConfiguration { core.configuration }

    /// The event loop serving this connection, as a task executor: run code
    /// with it as preference (`withTaskExecutorPreference`) to stay on the
    /// connection's thread.
    public var executor: any TaskExecutor { core.loop }

    // Loop thread only.
    private var inbox: [TobyBatch] = []
    private var inboxHead = 0
    private var inboxBytes = 0
    private var current: TobyBatch?
    private var currentIndex = 0
    private var ended: TobyError??  // nil: open; .some(nil): clean end
    private var waiter: (id: Int, continuation: CheckedContinuation<Void, any Error>)?
    private var nextWaiterID = 0

    // Guarded by claimLock.
    private let claimLock = ConditionLock()
    private var claimed = false

    init(core: TobyConnection) {
        self.core = core
    }

    // MARK: From the loop (the bridge handler)

    /// Unread bytes above which the loop stops reading this connection until
    /// the consumer has taken half of them.
    var inboxLimit: Int { max(configuration.ringCapacity * 4, 256 << 10) }

    func loopReceived(_ messages: TobyMessages) {
        loop.assertOnLoop()
        let batch: TobyBatch
        if messages.count == 1, let framed = loop.currentDirect,
            framed.withUnsafeBytes({ $0.baseAddress.map { $0 + Int(TOBY_PREFIX_SIZE) } }) == messages[0].bytes.baseAddress
        {
            // A frame larger than the ring, already framed in its own array:
            // handed over as it is, not copied again.
            batch = TobyBatch(frame: framed, byteOrder: configuration.byteOrder)
        } else {
            batch = TobyBatch(messages, byteOrder: configuration.byteOrder)
        }
        inbox.append(batch)
        inboxBytes += batch.framedByteCount
        if inboxBytes > inboxLimit { core.holdInbound() }
        wakeConsumer()
    }

    func loopEnded(_ error: TobyError?) {
        loop.assertOnLoop()
        if ended == nil { ended = .some(error) }
        wakeConsumer()
    }

    /// The server's grace period is over: nothing more is delivered.
    /// Messages read but not yet taken are dropped (never delivered, so no
    /// reply is owed for them); the consumer sees the end of its inbound,
    /// while its sends go on being accepted until it closes.
    func loopQuiesce() {
        loop.assertOnLoop()
        inbox.removeAll()
        inboxHead = 0
        inboxBytes = 0
        current = nil
        currentIndex = 0
        if ended == nil { ended = .some(nil) }
        wakeConsumer()
    }

    private func wakeConsumer() {
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume()
        }
    }

    // MARK: Receiving

    /// Claims the single-consumer right; false if another iterator holds it.
    func claim() -> Bool {
        claimLock.withLock {
            if claimed { return false }
            claimed = true
            return true
        }
    }

    func releaseClaim() {
        claimLock.withLock { claimed = false }
    }

    /// The next batch, or nil at the end of stream. On the loop thread.
    func nextBatchOnLoop() async throws -> TobyBatch? {
        loop.assertOnLoop()
        while true {
            if let batch = current {
                // A message receive took part of it (or all of it): the
                // rest, if any, as a batch of its own.
                let taken = currentIndex
                current = nil
                currentIndex = 0
                if taken == 0 { return batch }
                if taken < batch.count { return TobyBatch(remainderOf: batch, from: taken) }
            }
            if let batch = popBatch() { return batch }
            if let ended {
                if let error = ended { throw error }
                return nil
            }
            try await waitForInbound()
        }
    }

    /// The next message, or nil at the end of stream. On the loop thread.
    func nextMessageOnLoop() async throws -> ArraySlice<UInt8>? {
        loop.assertOnLoop()
        while true {
            if let batch = current {
                if currentIndex < batch.count {
                    let message = batch[currentIndex]
                    currentIndex += 1
                    return message
                }
                current = nil
                currentIndex = 0
            }
            if let batch = popBatch() {
                current = batch
                currentIndex = 0
                continue
            }
            if let ended {
                if let error = ended { throw error }
                return nil
            }
            try await waitForInbound()
        }
    }

    private func popBatch() -> TobyBatch? {
        guard inboxHead < inbox.count else { return nil }
        let batch = inbox[inboxHead]
        inboxHead += 1
        inboxBytes -= batch.framedByteCount
        if inboxHead == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxHead = 0
        }
        if inboxBytes <= inboxLimit / 2 { core.releaseInbound() }
        return batch
    }

    /// Whether a consumer is suspended waiting for inbound (loop only; tests).
    var isWaitingForInbound: Bool { waiter != nil }

    private func waitForInbound() async throws {
        try Task.checkCancellation()
        nextWaiterID += 1
        let id = nextWaiterID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                waiter = (id, continuation)
            }
        } onCancel: {
            loop.enqueue(.run { self.cancelWaiter(id) })
        }
    }

    private func cancelWaiter(_ id: Int) {
        guard let waiter, waiter.id == id else { return }
        self.waiter = nil
        waiter.continuation.resume(throwing: CancellationError())
    }

    /// Runs `body` on the loop: at once if already there, else with the
    /// loop as the task's executor preference (a hop there and back).
    @inline(__always)
    func onLoop<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if loop.isCurrent { return try await body() }
        return try await withTaskExecutorPreference(loop) { try await body() }
    }

    /// The inbound messages, one at a time, as views of their batch (no
    /// copy). Ends with `nil` at a clean end of stream and throws the
    /// connection's error (``TobyError``) after every message before it.
    public var messages: Messages { Messages(connection: self) { try await $0.nextMessageOnLoop() } }

    /// The inbound messages a read at a time: each element is every complete
    /// message that read brought.
    public var batches: Batches { Batches(connection: self) { try await $0.nextBatchOnLoop() } }

    /// The next message, lent to `body` (valid during the call): parse in
    /// place without copying. Returns nil at the end of stream.
    public func withNextMessage<R: Sendable>(_ body: @Sendable (UnsafeRawBufferPointer) throws -> R) async throws -> R? {
        guard claim() else { throw TobyError.alreadyReceiving }
        defer { releaseClaim() }
        return try await onLoop {
            guard let message = try await self.nextMessageOnLoop() else { return nil }
            return try message.withUnsafeBytes { try body($0) }
        }
    }

    // MARK: Sending

    /// Sends one message: returns once the connection's queue has accepted
    /// it, first suspending (never blocking a thread) while the queue is
    /// above its high-water mark.
    ///
    /// - Throws: ``TobyError/frameTooLarge(length:limit:prefix:)``,
    ///   ``TobyError/closed`` after a close, the connection's error,
    ///   ``TobyError/writeTimedOut(_:)`` after `writeTimeout` without room (the
    ///   message was not accepted), or `CancellationError`.
    public func send(_ message: [UInt8]) async throws {
        try await onLoop {
            try await self.core.waitForOutput(.room)
            try self.core.enqueueOnLoop(message)
        }
    }

    /// Sends the UTF-8 bytes of `text` as one message.
    public func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Sends several messages, in order, accepted together.
    public func send(contentsOf messages: [[UInt8]]) async throws {
        try await onLoop {
            try await self.core.waitForOutput(.room)
            for message in messages { try self.core.enqueueOnLoop(message) }
        }
    }

    /// Sends every message of a batch, in order: in the connection's byte
    /// order the batch's frames go out as they are, one retained array.
    public func send(contentsOf batch: TobyBatch) async throws {
        try await onLoop {
            try await self.core.waitForOutput(.room)
            if batch.byteOrder == self.configuration.byteOrder {
                for index in batch.indices where batch[index].count > self.configuration.maxFrameLength {
                    throw TobyError.frameTooLarge(
                        length: UInt64(batch[index].count), limit: UInt64(self.configuration.maxFrameLength), prefix: [])
                }
                try self.core.enqueueFramedOnLoop(batch.frames, count: batch.count)
            } else {
                for message in batch { try self.core.enqueueOnLoop(Array(message)) }
            }
        }
    }

    /// Waits until everything accepted so far has been handed to the kernel.
    public func flush() async throws {
        try await onLoop {
            self.core.loop.flushDirty()
            try await self.core.waitForOutput(.drained)
        }
    }

    /// Sends everything accepted, then ends the stream; returns once the
    /// queue has drained (or the connection failed: then it throws).
    /// Reading goes on until the peer ends too, as for ``TobyConnection/close()``.
    public func close() async throws {
        try await close(discardingInput: false)
    }

    /// `close()`; `discardingInput` for an owner that will not read again
    /// (a server task that ended): the peer's further bytes are discarded.
    func close(discardingInput: Bool) async throws {
        try await onLoop {
            guard !self.core.isClosed else { return }
            if discardingInput { self.core.closeDiscardingInput() } else { self.core.close() }
            self.core.loop.flushDirty()
            try await self.core.waitForOutput(.drained)
        }
    }

    /// Drops everything queued and resets the connection. Safe from anywhere.
    public func abort() {
        core.abort()
    }
}

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

/// The handler that connects a loop connection to its async side.
struct AsyncBridge: TobyServerHandler {
    let body: @Sendable (TobyAsyncConnection) async throws -> Void
    let preferLoop: Bool
    var connection: TobyAsyncConnection?

    mutating func connectionOpened(_ core: TobyConnection) {
        let connection = TobyAsyncConnection(core: core)
        self.connection = connection
        let body = self.body
        Task(executorPreference: preferLoop ? core.loop : nil) {
            do {
                try await body(connection)
                try await connection.close(discardingInput: true)
            } catch {
                // The body's own failure (or a connection error it let
                // through) ends the connection; queued output still goes out.
                try? await connection.close(discardingInput: true)
            }
        }
    }

    func received(_ messages: TobyMessages, on core: TobyConnection) {
        connection?.loopReceived(messages)
    }

    func inputEnded(on core: TobyConnection) {
        // The async side decides when to close (its task ends, or close()).
        connection?.loopEnded(nil)
    }

    func connectionClosed(_ core: TobyConnection, error: TobyError?) {
        connection?.loopEnded(error)
    }

    func shouldQuiesce(on core: TobyConnection) {
        // The task closes the connection once it has seen the end.
        connection?.loopQuiesce()
    }
}

extension TobyServer {
    /// Listens on a TCP address and serves each connection with an async
    /// `body`, in a task of its own started on the connection's loop.
    ///
    /// ```swift
    /// let server = try TobyServer.serve(port: 0) { connection in
    ///     for try await batch in connection.batches {
    ///         try await connection.send(contentsOf: batch)
    ///     }
    /// }
    /// ```
    ///
    /// When `body` returns (or throws), the connection is closed gracefully:
    /// everything it sent goes out, then the stream ends.
    ///
    /// - Parameters:
    ///   - host: A numeric address or a name; `"0.0.0.0"` or `"::"` for all.
    ///   - port: The port; 0 picks a free one (read it from ``port``).
    ///   - configuration: Framing, limits and timeouts of every connection.
    ///   - options: Back-pressure and backlog.
    ///   - group: The loops to serve on; nil makes a group the server owns.
    ///   - preferLoopExecutor: run each connection's task with its loop as
    ///     executor preference (default), so I/O resumes it on the loop's
    ///     thread without a hop; false runs it on Swift's global pool.
    ///   - body: Serves one connection.
    /// - Throws: As ``listen(host:port:configuration:options:group:handler:)``.
    public static func serve(
        host: String = "127.0.0.1", port: Int, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil, preferLoopExecutor: Bool = true,
        _ body: @escaping @Sendable (TobyAsyncConnection) async throws -> Void
    ) throws(TobyError) -> TobyServer {
        try listen(host: host, port: port, configuration: configuration, options: options, group: group) { _ in
            AsyncBridge(body: body, preferLoop: preferLoopExecutor, connection: nil)
        }
    }

    /// Listens on a Unix domain socket and serves each connection with an
    /// async `body` (see ``serve(host:port:configuration:options:group:preferLoopExecutor:_:)``).
    ///
    /// - Parameters:
    ///   - unixPath: The socket's path; it must not exist, and ``close(gracePeriod:)`` removes it.
    ///   - configuration: Framing, limits and timeouts of every connection.
    ///   - options: Back-pressure and backlog.
    ///   - group: The loops to serve on; nil makes a group the server owns.
    ///   - preferLoopExecutor: as for the TCP form.
    ///   - body: Serves one connection.
    public static func serve(
        unixPath: String, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil, preferLoopExecutor: Bool = true,
        _ body: @escaping @Sendable (TobyAsyncConnection) async throws -> Void
    ) throws(TobyError) -> TobyServer {
        try listen(unixPath: unixPath, configuration: configuration, options: options, group: group) { _ in
            AsyncBridge(body: body, preferLoop: preferLoopExecutor, connection: nil)
        }
    }
}
