import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// The send half of a connection: a queue with combining writes.
///
/// Any thread may send. The first sender to find no write in progress
/// becomes the writer: it writes its own frame straight from the caller's
/// storage (no copy, no queue), then keeps writing whatever other threads
/// queued meanwhile, many frames per `sendmsg`, until the queue is empty.
/// Threads that arrive while a write is in progress only append their
/// message (an array retain, no copy) and return. So a lone sender pays one
/// syscall per message with no hand-off, and contended senders share
/// syscalls instead of queueing on a lock around `write`. Frames never
/// interleave because only the writer touches the socket, and each
/// thread's messages keep their order because it appends them in order.
///
/// Fairness: a writer drains at most `passesBeforeHandoff` batches of other
/// threads' messages. After that the next thread to queue a message waits
/// to take the writer role over, so the first writer goes back to its own
/// work instead of writing for everybody else while its own messages wait
/// (which, measured, ended with that thread sending its backlog alone at
/// one syscall per message). The successor is inside `send`, so queued
/// messages always have a writer.
///
/// Backpressure: when `maxQueuedSendBytes` are queued, further senders wait
/// until the writer has taken the queue.
final class FrameSender: @unchecked Sendable {
    private static let passesBeforeHandoff = 2
    private static let framesPerPass = 1024

    private let socket: SocketHandle
    private let byteOrder: toby_byte_order
    private let limit: UInt64
    private let maxQueuedBytes: Int
    private let lock = ConditionLock()

    // Guarded by `lock`.
    private var queue: [[UInt8]] = []
    private var queueHead = 0  // queue[..<queueHead] were taken by a writer
    private var queuedBytes = 0
    private var writing = false
    private var writerPasses = 0
    private var successorWaiting = false
    private var handoff = false
    private var closed = false
    private var failure: TobyError?
    private var waiters = 0
    private var swaps = 0  // times a writer took the queue

    // Touched only by the thread that holds the writer role.
    private var writer: UnsafeMutablePointer<toby_writer>?  // about 56 KiB, made by the first write
    private var batch: [[UInt8]] = []
    private var outs: [toby_out] = []

    init(socket: SocketHandle, configuration: TobyConfiguration) {
        self.socket = socket
        self.limit = UInt64(configuration.maxFrameLength)
        self.maxQueuedBytes = configuration.maxQueuedSendBytes
        self.byteOrder = configuration.cByteOrder
    }

    deinit {
        writer?.deallocate()
    }

    /// As the writer: the C writer, allocated on first use so that a
    /// connection that never sends costs none of its buffers.
    @inline(__always)
    private func preparedWriter() -> UnsafeMutablePointer<toby_writer> {
        if let writer { return writer }
        let made = UnsafeMutablePointer<toby_writer>.allocate(capacity: 1)
        // Cannot fail: its only error is TOBY_EINVAL for a NULL pointer.
        _ = toby_writer_init(made, byteOrder, socket.fd, toby_io_system())
        writer = made
        return made
    }

    // MARK: Sending

    func send(_ message: [UInt8]) throws(TobyError) {
        try checkLength(message.count)
        switch try admit(
            1,
            {
                queue.append(message); queuedBytes += message.count
            })
        {
        case .queued: return
        case .drain: try finishWriting(nil)
        case .writeDirectly: try finishWriting(message.withUnsafeBytes { writeOne($0) })
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws(TobyError) {
        try checkLength(bytes.count)
        // Copied only if it must wait in the queue.
        switch try admit(
            1,
            {
                queue.append([UInt8](bytes)); queuedBytes += bytes.count
            })
        {
        case .queued: return
        case .drain: try finishWriting(nil)
        case .writeDirectly: try finishWriting(writeOne(bytes))
        }
    }

    func send(contentsOf messages: [[UInt8]]) throws(TobyError) {
        for message in messages { try checkLength(message.count) }
        if messages.isEmpty { return }
        let admission = try admit(messages.count) {
            queue.append(contentsOf: messages)
            for message in messages { queuedBytes += message.count }
        }
        switch admission {
        case .queued: return
        case .drain: try finishWriting(nil)
        case .writeDirectly: try finishWriting(writeBatch(messages))
        }
    }

    /// Bytes accepted and not yet taken by a writer.
    var pendingBytes: Int { lock.withLock { queuedBytes } }

    /// Waits until every accepted message has been handed to the kernel.
    func flush() throws(TobyError) {
        lock.lock()
        defer { lock.unlock() }
        waitWhileWriting()
        if let failure { throw failure }
    }

    /// Refuses new messages, writes every accepted one, then shuts down the
    /// write side so the peer sees a clean end of stream after them.
    func close() throws(TobyError) {
        lock.lock()
        let wasClosed = closed
        closed = true
        waitWhileWriting()
        let failure = self.failure
        lock.unlock()
        if !wasClosed { socket.shutdown(Int32(SHUT_WR)) }
        if let failure { throw failure }
    }

    /// ``close()`` that waits for a write in progress only until `deadline`
    /// (monotonic ns): false if it was still writing then (a peer that does
    /// not read); the write side is then left for the caller to reset.
    func close(until deadline: UInt64) -> Bool {
        lock.lock()
        let wasClosed = closed
        closed = true
        while writing && failure == nil {
            if monotonicNanoseconds() >= deadline {
                lock.unlock()
                return false
            }
            waiters += 1
            _ = lock.wait(untilMonotonicNanoseconds: deadline)
            waiters -= 1
        }
        lock.unlock()
        if !wasClosed { socket.shutdown(Int32(SHUT_WR)) }
        return true
    }

    // MARK: Internals

    /// With the lock held: waits until no thread holds the writer role (the
    /// queue is then empty) or the connection failed.
    private func waitWhileWriting() {
        while writing && failure == nil {
            waiters += 1
            lock.wait()
            waiters -= 1
        }
    }

    private enum Admission {
        /// The message is queued behind the current writer: return.
        case queued
        /// This thread is the writer and the queue is empty: write the
        /// message straight from the caller's memory, then drain.
        case writeDirectly
        /// This thread took the writer role over with its message queued:
        /// drain the queue.
        case drain
    }

    @inline(__always)
    private func checkLength(_ count: Int) throws(TobyError) {
        if UInt64(count) > limit {
            throw .frameTooLarge(length: UInt64(count), limit: limit, prefix: [])
        }
    }

    /// With the lock held: the error a new message gets, if any.
    private func acceptError() -> TobyError? {
        if let failure { return failure }
        if closed { return .closed }
        return nil
    }

    /// Decides what happens to `count` new messages; `enqueue` appends them
    /// to the queue (called with the lock held, at most once). They are
    /// counted as sent, with the lock held, once accepted.
    private func admit(_ count: Int, _ enqueue: () -> Void) throws(TobyError) -> Admission {
        lock.lock()
        if let error = acceptError() {
            lock.unlock()
            throw error
        }
        if writing && queuedBytes >= maxQueuedBytes {
            // Wait until the writer has taken the queue once. Waiting for the
            // queue to have room again instead would starve this thread:
            // threads still running refill it before this one wakes up.
            let generation = swaps
            while writing && swaps == generation && failure == nil && !closed {
                // A thread waiting for room is as good a successor as any.
                if writerPasses >= FrameSender.passesBeforeHandoff && !successorWaiting {
                    return try takeOver(count, enqueue)
                }
                waiters += 1
                lock.wait()
                waiters -= 1
            }
        }
        if let error = acceptError() {
            lock.unlock()
            throw error
        }
        guard writing else {
            // The queue is empty whenever nobody holds the writer role.
            writing = true
            writerPasses = 0
            socket.messagesSent.bump(count)
            lock.unlock()
            return .writeDirectly
        }
        if writerPasses >= FrameSender.passesBeforeHandoff && !successorWaiting {
            return try takeOver(count, enqueue)
        }
        enqueue()
        socket.messagesSent.bump(count)
        lock.unlock()
        return .queued
    }

    /// With the lock held: the writer has drained enough for others, so this
    /// thread queues its message and waits to take the writer role over.
    private func takeOver(_ count: Int, _ enqueue: () -> Void) throws(TobyError) -> Admission {
        enqueue()
        successorWaiting = true
        while !handoff && failure == nil {
            waiters += 1
            lock.wait()
            waiters -= 1
        }
        if handoff {
            handoff = false
            writerPasses = 0
            socket.messagesSent.bump(count)
            lock.unlock()
            return .drain
        }
        let error = failure!  // our message went down with the connection
        lock.unlock()
        throw error
    }

    /// As the writer: drains what others queued, then gives up the role (or
    /// hands it to a waiting successor). Throws the first write error, which
    /// also becomes sticky.
    private func finishWriting(_ firstError: TobyError?) throws(TobyError) {
        var error = firstError
        while error == nil {
            lock.lock()
            if successorWaiting {
                // A thread inside `send` waits to take over: it drains the rest.
                successorWaiting = false
                handoff = true
                lock.broadcast()
                lock.unlock()
                return
            }
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
                writing = false
                if waiters > 0 { lock.broadcast() }
                lock.unlock()
                return
            }
            // A pass takes at most `framesPerPass` messages, so that under
            // load the writer role rotates often and every thread keeps
            // producing (see the fairness note above).
            let end = min(queue.count, queueHead + FrameSender.framesPerPass)
            for index in queueHead..<end {
                queuedBytes -= queue[index].count
                batch.append(queue[index])
                queue[index] = []  // release it from the queue now
            }
            queueHead = end
            if queueHead >= 4096 && queueHead * 2 >= queue.count {
                // Amortised O(1) per message: compact only once the taken
                // part is at least half the array.
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            swaps &+= 1
            writerPasses += 1
            if waiters > 0 { lock.broadcast() }
            lock.unlock()
            error = writeBatch(batch)
            batch.removeAll(keepingCapacity: true)
        }
        lock.lock()
        // The connection is broken: what others queued cannot be written.
        // They learn it from the sticky error on their next send or close.
        failure = error
        queue.removeAll()
        queueHead = 0
        queuedBytes = 0
        writing = false
        successorWaiting = false
        handoff = false
        lock.broadcast()
        lock.unlock()
        socket.shutdown(Int32(SHUT_WR))
        throw error!
    }

    private func writeOne(_ bytes: UnsafeRawBufferPointer) -> TobyError? {
        var out = toby_out(data: bytes.baseAddress, len: bytes.count)
        return write(&out, count: 1)
    }

    private func writeBatch(_ messages: [[UInt8]]) -> TobyError? {
        outs.removeAll(keepingCapacity: true)
        for message in messages {
            // The pointer outlives `withUnsafeBytes`: safe here because
            // `messages` keeps every array alive and unmodified until the
            // write returns, and a native array's storage never moves
            // while it is neither mutated nor released.
            let base = message.withUnsafeBytes { $0.baseAddress }
            outs.append(toby_out(data: base, len: message.count))
        }
        return withExtendedLifetime(messages) {
            outs.withUnsafeMutableBufferPointer { frames in
                guard let base = frames.baseAddress else { return nil }  // nothing to write
                return write(base, count: frames.count)
            }
        }
    }

    private func write(_ frames: UnsafePointer<toby_out>, count: Int) -> TobyError? {
        let writer = preparedWriter()
        var index = 0
        var offset: UInt64 = 0
        while true {
            let rc = toby_writer_write(writer, frames, count, &index, &offset, 0)
            if rc == 0 {
                // As the writer (one thread at a time): bump, not add.
                var bytes = count * 8
                for i in 0..<count { bytes += frames[i].len }
                socket.bytesSent.bump(bytes)
                return nil
            }
            if rc == -EAGAIN || rc == -EWOULDBLOCK {
                // Only with SO_SNDTIMEO or a non-blocking descriptor from the user.
                do { try socket.waitWritable() } catch { return error }
                continue
            }
            return TobyError.fromCode(Int(rc), operation: "sendmsg")
        }
    }
}
