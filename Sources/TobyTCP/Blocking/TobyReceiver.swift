import CTobyFrame
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The receiving end of a connection: whole messages, in order.
///
/// Get one from ``TobyMessenger/start()``. Messages can be taken in several
/// styles, fastest first:
///
/// - ``receive(_:)`` lends each message's bytes where they lie in the ring
///   buffer, with no copy and no allocation;
/// - ``receive()`` / ``receive(timeout:)`` / ``tryReceive()`` return each
///   message as a new `[UInt8]`;
/// - ``receiveAvailable(maxCount:)`` returns the next message with every
///   complete message already buffered behind it;
/// - `for message in receiver` (blocking `Sequence`).
///
/// Every receive blocks its thread (or, with ``tryReceive()``, does not wait
/// at all). Async code should not call them from a task: it takes a
/// ``TobyAsyncConnection`` instead, whose `messages` and `batches` suspend
/// on an event loop without blocking a thread.
///
/// There is no receive thread and no hand-off: the thread that asks for a
/// message performs the `recvmsg` itself, into the ring, and every other
/// frame that one read brought stays decoded-in-place in the ring for the
/// next calls. A consumer that is already waiting therefore gets its message
/// straight from the kernel.
///
/// **Memory bound.** A receiver holds at most its ring
/// (``TobyConfiguration/ringCapacity``, allocated by the first receive) plus
/// the one large frame being read, which grows only as its bytes arrive:
/// never more than 1.25 times what was received (or 4 KiB), capped at the
/// announced length (the rule of `LargeFrame`, which servers share). So a peer that announces a 32 MiB frame
/// and sends one byte costs the ring and 4 KiB, in virtual as well as
/// resident memory. While the consumer does not call receive, nothing is
/// read: unread data waits in the kernel's socket buffer and TCP's flow
/// control stops the peer.
///
/// **Adopted sockets.** A socket given to ``TobyMessenger/init(socket:configuration:)``
/// may have `O_NONBLOCK` or `SO_RCVTIMEO` set; they are left as they are.
/// When they make a read return `EAGAIN`, the receiver waits for the socket
/// with `poll(2)` (until the call's deadline, if it has one) and reads again:
/// it never spins and never traps. Use ``TobyConfiguration/readTimeout`` for
/// timeouts; `SO_RCVTIMEO` does not end a receive.
///
/// **Errors.** The stream ends with `nil` when the peer closes cleanly. An
/// error (frame too large, a frame cut short, a reset) is thrown only after
/// every complete message before it was delivered, and is then thrown again
/// by every later call.
///
/// **Threads.** A receiver is `Sendable` and its methods may be called from
/// any thread; calls are serialised, and a blocking receive holds the
/// receiver until its message arrives: a ``tryReceive()`` or ``error`` on
/// another thread meanwhile waits for it.
public final class TobyReceiver: @unchecked Sendable {
    /// The configuration of the connection.
    public let configuration: TobyConfiguration

    let socket: SocketHandle
    let lock = ConditionLock()
    let reader: UnsafeMutablePointer<toby_reader>
    let limit: UInt64

    // Guarded by `lock`.
    var ring: UnsafeMutableRawPointer?  // allocated by the first read; see `prepareReader`
    var ended = false
    var failure: TobyError?
    var large = LargeFrame(headroom: 0)  // a frame too big for the ring, being read
    var scratch: UnsafeMutableRawBufferPointer?  // for frames that wrap the ring

    // Set by `close()` before it takes the lock (a blocked receive holds
    // it); read by every receive path, with the lock held.
    let closedByOwner = Atomic<Bool>(false)
    // The thread running a borrowing receive's body (0: none), so that a
    // `close()` from inside the body does not wait for the lock it holds.
    let bodyThread = Atomic<UInt>(0)

    init(socket: SocketHandle, configuration: TobyConfiguration) {
        self.socket = socket
        self.configuration = configuration
        self.limit = UInt64(configuration.maxFrameLength)
        reader = .allocate(capacity: 1)
        reader.initialize(to: toby_reader())
    }

    deinit {
        reader.deallocate()
        ring?.deallocate()
        scratch?.deallocate()
    }

    /// With the lock held: allocates the ring and sets up the reader on the
    /// first read, so a receiver that never reads costs no ring.
    @inline(__always)
    func prepareReader() {
        if ring != nil { return }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: configuration.ringCapacity, alignment: 64)
        ring = buffer
        // Cannot fail: the configuration checked the capacity and both
        // pointers are valid (TOBY_EINVAL is its only error).
        _ = toby_reader_init(
            reader, buffer.assumingMemoryBound(to: UInt8.self), configuration.ringCapacity,
            UInt64(configuration.maxFrameLength), configuration.cByteOrder, socket.fd, toby_io_system())
    }

    /// Whether ``close()`` was called, or a graceful shutdown began
    /// (``TobyMessenger/shutdown(linger:)``): either way nothing more is
    /// delivered.
    @inline(__always)
    var isClosed: Bool {
        closedByOwner.load(ordering: .acquiring) || socket.quiescing.load(ordering: .sequentiallyConsistent)
    }

    /// Runs a wait for bytes (a blocking read or a poll) marked as parked,
    /// so a graceful shutdown knows this receiver owes nothing. The flag
    /// goes up before the shutdown flag is checked, and down before what
    /// was read is looked at: whichever way the two race, nothing read
    /// after the shutdown began is delivered, and the shutdown never
    /// closes the send side under a message still being answered.
    @inline(__always)
    func parked<T>(_ blocking: Bool, _ body: () throws(TobyError) -> T) throws(TobyError) -> T? {
        guard blocking else { return try body() }
        socket.receiverParked.store(true, ordering: .sequentiallyConsistent)
        defer { socket.receiverParked.store(false, ordering: .sequentiallyConsistent) }
        if socket.quiescing.load(ordering: .sequentiallyConsistent) { return nil }
        return try body()
    }

    /// With the lock held, once closed: releases what the receiver buffered.
    func discardAfterClose() {
        ended = true
        large.reset()
        ring?.deallocate()
        ring = nil
        scratch?.deallocate()
        scratch = nil
    }

    /// The error that ended the stream, or `nil` while it is healthy or after
    /// a clean end. Useful after a `for message in receiver` loop, which
    /// cannot throw.
    public var error: TobyError? {
        lock.withLock { failure }
    }

    /// Bytes allocated for the large frame being read, how many of them were
    /// filled, and whether the ring is allocated; for tests.
    var allocationForTesting: (large: Int, filled: Int, ring: Bool) {
        lock.withLock { (large.allocated, large.filled, ring != nil) }
    }

    // MARK: Receiving

    /// Waits for the next message.
    ///
    /// If ``TobyConfiguration/readTimeout`` is set, waits at most that long.
    ///
    /// - Returns: The message, or `nil` once the peer has closed the stream
    ///   cleanly and every message was delivered.
    /// - Throws: ``TobyError`` when the stream failed (after every complete
    ///   message before the failure was returned), or
    ///   ``TobyError/timedOut(_:)`` when the configured read timeout passed.
    public func receive() throws(TobyError) -> [UInt8]? {
        if let timeout = configuration.readTimeout { return try receive(timeout: timeout) }
        lock.lock()
        defer { lock.unlock() }
        if let message = nextBuffered() { return message }
        // Without a deadline `step` waits out EAGAIN itself (a user-set
        // O_NONBLOCK or SO_RCVTIMEO), so it never returns `.wouldBlock`.
        return try takeOwned(try step(flags: 0, deadline: nil))
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// - Returns: The message, or `nil` at a clean end of stream.
    /// - Throws: ``TobyError/timedOut(_:)`` if nothing complete arrived in
    ///   time (the receiver stays usable and keeps any partial frame), or the
    ///   error that ended the stream.
    public func receive(timeout: Duration) throws(TobyError) -> [UInt8]? {
        let deadline = monotonicNanoseconds() &+ timeout.clampedNanoseconds
        lock.lock()
        defer { lock.unlock() }
        let outcome = try step(flags: Int32(MSG_DONTWAIT), deadline: deadline)
        if case .wouldBlock = outcome { throw .timedOut(timeout) }
        return try takeOwned(outcome)
    }

    /// Returns the next message if it can be had without waiting.
    ///
    /// - Returns: The message, or `nil` if no complete message is available yet.
    /// - Throws: ``TobyError/endOfStream`` once the peer has closed cleanly
    ///   and everything was delivered, ``TobyError/closed`` after
    ///   ``close()``, or the error that ended the stream.
    public func tryReceive() throws(TobyError) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        if let message = nextBuffered() { return message }
        let outcome = try step(flags: Int32(MSG_DONTWAIT), deadline: 0)
        switch outcome {
        case .wouldBlock: return nil
        case .end: throw isClosed ? .closed : .endOfStream
        default: return try takeOwned(outcome)
        }
    }

    /// Waits for the next message and lends its bytes to `body` without
    /// copying them: the fastest way to consume messages.
    ///
    /// The buffer is valid only during `body`. It points into the ring
    /// buffer, except for a frame that wraps around the ring's end (copied
    /// once into a scratch buffer to be contiguous) or one larger than the
    /// ring (read straight into its own storage). Do not call other receive
    /// methods of this receiver from `body`.
    ///
    /// - Returns: What `body` returned, or `nil` at a clean end of stream.
    /// - Throws: ``TobyError`` as ``receive()`` does, or what `body` threw.
    public func receive<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) throws -> Result? {
        lock.lock()
        defer { lock.unlock() }
        // Hot path: a whole, unwrapped frame already in the ring.
        if let frame = bufferedFrame(), frame.len.1 == 0 {
            defer { consumeFrame() }
            return try lend(UnsafeRawBufferPointer(start: frame.data.0, count: frame.len.0), to: body)
        }
        let timeout = configuration.readTimeout
        let deadline = timeout.map { monotonicNanoseconds() &+ $0.clampedNanoseconds }
        let outcome = try step(flags: deadline == nil ? 0 : Int32(MSG_DONTWAIT), deadline: deadline)
        switch outcome {
        case .end:
            return nil
        case .wouldBlock:
            // Only with a deadline, hence a timeout.
            throw TobyError.timedOut(timeout ?? .zero)
        case .owned(let message):
            return try message.withUnsafeBytes { bytes in try lend(bytes, to: body) }
        case .ring(let frame):
            defer { consumeFrame() }
            if frame.len.1 == 0 {
                return try lend(UnsafeRawBufferPointer(start: frame.data.0, count: frame.len.0), to: body)
            }
            let buffer = scratchBuffer()
            UnsafeMutableRawBufferPointer(rebasing: buffer[0..<frame.len.0])
                .copyMemory(from: UnsafeRawBufferPointer(start: frame.data.0, count: frame.len.0))
            UnsafeMutableRawBufferPointer(rebasing: buffer[frame.len.0..<(frame.len.0 + frame.len.1)])
                .copyMemory(from: UnsafeRawBufferPointer(start: frame.data.1, count: frame.len.1))
            return try lend(UnsafeRawBufferPointer(rebasing: buffer[0..<(frame.len.0 + frame.len.1)]), to: body)
        }
    }

    /// Runs a borrowing receive's `body`, noting its thread for ``close()``.
    @inline(__always)
    func lend<Result>(
        _ bytes: UnsafeRawBufferPointer, to body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        bodyThread.store(UInt(pthread_self()), ordering: .relaxed)
        defer { bodyThread.store(0, ordering: .relaxed) }
        return try body(bytes)
    }

    /// Stops receiving, for good and at once.
    ///
    /// After `close()` returns, no receive delivers a message, not even one
    /// already buffered: every receive, blocked at that moment or called
    /// later, returns the end of the stream at once (`nil`; an empty batch
    /// for ``receiveAvailable(maxCount:)``; ``tryReceive()`` throws
    /// ``TobyError/closed``). What the receiver buffered is released, and
    /// the peer's further bytes cost no memory here: the socket's read side
    /// is shut down, and its receive buffer is cut to the minimum, so the
    /// kernel stops accepting them and TCP's flow control stops the peer
    /// (the descriptor itself is closed when the messenger and receiver are
    /// both gone, as always). Does not stop the messenger from sending.
    ///
    /// A receive running on another thread is woken (a blocked `recvmsg`
    /// or wait returns at once) and `close()` waits for it to return;
    /// called from inside a borrowing receive's body, it does not wait.
    /// Calling it again does nothing more.
    public func close() {
        if closedByOwner.exchange(true, ordering: .acquiringAndReleasing) { return }
        socket.shutdown(Int32(SHUT_RD))
        // Unix sockets charge the peer's bytes to the peer; for TCP this
        // caps what the kernel queues from now on (it rounds up to its
        // minimum, a few KiB).
        var minimum: Int32 = 1
        _ = setsockopt(socket.fd, SOL_SOCKET, SO_RCVBUF, &minimum, socklen_t(MemoryLayout<Int32>.size))
        if bodyThread.load(ordering: .relaxed) == UInt(pthread_self()) { return }
        // Any receive that holds the lock now sees the flag and returns.
        lock.withLock { discardAfterClose() }
    }
}
