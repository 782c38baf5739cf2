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

    /// The next message, lent to `body` as a buffer pointer (valid during
    /// the call): parse in place without copying. Returns nil at the end of
    /// stream. The async form of ``TobyReceiver/receive(_:)``, lending the
    /// same way; ``withNextMessage(_:)`` lends a `RawSpan` instead.
    public func receive<R: Sendable>(_ body: @Sendable (UnsafeRawBufferPointer) throws -> R) async throws -> R? {
        guard claim() else { throw TobyError.alreadyReceiving }
        defer { releaseClaim() }
        return try await onLoop {
            guard let message = try await self.nextMessageOnLoop() else { return nil }
            return try message.withUnsafeBytes { try body($0) }
        }
    }

    #if compiler(>=6.2)
    /// The next message, lent to `body` as a `RawSpan`, which cannot escape
    /// the closure: the zero-copy receive with the compiler checking the
    /// lifetime, as ``TobyReceiver/withNextMessage(_:)-369ox`` lends it.
    /// Returns nil at the end of stream.
    ///
    /// ```swift
    /// let count = try await connection.withNextMessage { span in span.byteCount }
    /// ```
    public func withNextMessage<R: Sendable>(_ body: @Sendable (RawSpan) throws -> R) async throws -> R? {
        try await receive { buffer in
            // The span borrows `buffer`, valid for this closure only.
            try body(unsafe RawSpan(_unsafeBytes: buffer))
        }
    }
    #endif

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
