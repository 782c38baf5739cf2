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
/// Backpressure: when `maxQueuedSendBytes` are queued, further senders wait
/// until the writer has taken the queue.
final class FrameSender: @unchecked Sendable {
    private let socket: SocketHandle
    private let writer: UnsafeMutablePointer<toby_writer>
    private let limit: UInt64
    private let maxQueuedBytes: Int
    private let lock = ConditionLock()

    // Guarded by `lock`.
    private var queue: [[UInt8]] = []
    private var queuedBytes = 0
    private var writing = false
    private var closed = false
    private var failure: TobyError?
    private var waiters = 0

    // Touched only by the thread that set `writing`.
    private var batch: [[UInt8]] = []
    private var outs: [toby_out] = []

    init(socket: SocketHandle, configuration: TobyConfiguration) {
        self.socket = socket
        self.limit = UInt64(configuration.maxFrameLength)
        self.maxQueuedBytes = configuration.maxQueuedSendBytes
        writer = .allocate(capacity: 1)
        let rc = toby_writer_init(writer, configuration.cByteOrder, socket.fd, toby_io_system())
        precondition(rc == 0, "toby_writer_init: \(rc)")
    }

    deinit {
        writer.deallocate()
    }

    // MARK: Sending

    func send(_ message: [UInt8]) throws(TobyError) {
        try checkLength(message.count)
        if try enqueueOrBecomeWriter(message) { return }
        let error = message.withUnsafeBytes { writeOne($0) }
        try finishWriting(error)
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws(TobyError) {
        try checkLength(bytes.count)
        // Copied only if another thread is writing and we must queue it.
        if try enqueueOrBecomeWriter(nil, orCopy: bytes) { return }
        try finishWriting(writeOne(bytes))
    }

    func send(contentsOf messages: [[UInt8]]) throws(TobyError) {
        for message in messages { try checkLength(message.count) }
        if messages.isEmpty { return }
        lock.lock()
        if let error = acceptError() {
            lock.unlock()
            throw error
        }
        if writing {
            try waitForRoom()
            if writing {
                queue.append(contentsOf: messages)
                for message in messages { queuedBytes += message.count }
                lock.unlock()
                return
            }
        }
        writing = true
        lock.unlock()
        try finishWriting(writeBatch(messages))
    }

    /// Waits until every accepted message has been handed to the kernel.
    func flush() throws(TobyError) {
        lock.lock()
        defer { lock.unlock() }
        while writing && failure == nil {
            waiters += 1
            lock.wait()
            waiters -= 1
        }
        if let failure { throw failure }
    }

    /// Refuses new messages, writes every accepted one, then shuts down the
    /// write side so the peer sees a clean end of stream after them.
    func close() throws(TobyError) {
        lock.lock()
        let wasClosed = closed
        closed = true
        while writing && failure == nil {
            waiters += 1
            lock.wait()
            waiters -= 1
        }
        let failure = self.failure
        lock.unlock()
        if !wasClosed { socket.shutdown(Int32(SHUT_WR)) }
        if let failure { throw failure }
    }

    // MARK: Internals

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

    /// With the lock held and a write in progress: waits while the queue is
    /// full. Returns with the lock held; throws (lock released) if the
    /// connection failed or closed meanwhile.
    private func waitForRoom() throws(TobyError) {
        while writing && queuedBytes >= maxQueuedBytes && failure == nil && !closed {
            waiters += 1
            lock.wait()
            waiters -= 1
        }
        if let error = acceptError() {
            lock.unlock()
            throw error
        }
    }

    /// Queues the message if a write is in progress (returns true), or marks
    /// this thread as the writer (returns false) so it writes directly.
    private func enqueueOrBecomeWriter(
        _ message: [UInt8]?, orCopy bytes: UnsafeRawBufferPointer? = nil
    ) throws(TobyError) -> Bool {
        lock.lock()
        if let error = acceptError() {
            lock.unlock()
            throw error
        }
        if writing {
            try waitForRoom()
            if writing {
                let owned = message ?? [UInt8](bytes!)
                queue.append(owned)
                queuedBytes += owned.count
                lock.unlock()
                return true
            }
        }
        writing = true
        lock.unlock()
        return false
    }

    /// As the writer: drains what others queued, then gives up the role.
    /// Throws the first write error, which also becomes sticky.
    private func finishWriting(_ firstError: TobyError?) throws(TobyError) {
        var error = firstError
        while error == nil {
            lock.lock()
            if queue.isEmpty {
                writing = false
                if waiters > 0 { lock.broadcast() }
                lock.unlock()
                return
            }
            swap(&queue, &batch)
            queuedBytes = 0
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
        queuedBytes = 0
        writing = false
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
            outs.withUnsafeMutableBufferPointer { write($0.baseAddress!, count: $0.count) }
        }
    }

    private func write(_ frames: UnsafePointer<toby_out>, count: Int) -> TobyError? {
        var index = 0
        var offset: UInt64 = 0
        while true {
            let rc = toby_writer_write(writer, frames, count, &index, &offset, 0)
            if rc == 0 { return nil }
            if rc == -EAGAIN || rc == -EWOULDBLOCK {
                // Only with SO_SNDTIMEO or a non-blocking descriptor from the user.
                do { try socket.waitWritable() } catch { return error }
                continue
            }
            return TobyError.fromCode(Int(rc), operation: "sendmsg")
        }
    }
}
