import CTobyFrame
import Glibc

/// A connection served by an event loop (accepted by a ``TobyServer``).
///
/// It belongs to one loop thread, which reads it, runs its handler and
/// writes it with no lock. The handle itself may be used from any thread:
///
/// - On the loop thread (inside a handler), ``send(_:)-(UnsafeRawBufferPointer)``
///   queues the frame and the loop writes everything queued right after
///   the handler returns, in as few `sendmsg` calls as it takes.
/// - From another thread, `send` hands the message to the loop (a queue
///   and a wake-up) and returns; each thread's messages keep their order.
///   When more than `maxQueuedSendBytes` wait that way, the sending thread
///   blocks until the loop has taken them (a loop thread never blocks: it
///   queues beyond the bound instead).
///
/// ``close()`` sends everything accepted, then ends the stream;
/// ``abort()`` drops what is queued and resets the connection.
public final class TobyConnection: @unchecked Sendable {
    /// The peer's address as text, as for ``TobyMessenger/peer``.
    public let peer: String

    /// The connection's configuration (the server's).
    public let configuration: TobyConfiguration

    /// How long a half-closed connection waits for its peer's end, and a
    /// draining one for its peer to read, before it is closed regardless.
    static let lingerNanoseconds: UInt64 = 30_000_000_000

    let fd: Int32
    let token: UInt64
    /// Strong: a handle kept by user code after its loop stopped must stay
    /// safe to call (it then throws `closed`). The loop's reference to the
    /// connection goes when the connection closes, so no cycle outlives it.
    let loop: EventLoop
    /// The server (or client context) it belongs to; dropped when the
    /// connection closes, so a closed connection that user code keeps does
    /// not keep the server's handler factory (and what it captured) alive.
    var server: ServerCore?
    let order: toby_byte_order
    let shutdownLinger: UInt64

    // Loop thread only (checked in debug builds by `loop.assertOnLoop()`
    // at every entry point from the loop).
    /// The lifecycle: every decision about reading, closing and lingering.
    var machine: ConnectionStateMachine
    var handler: (any TobyServerHandler)?
    let reader: UnsafeMutablePointer<toby_reader>
    var ring: UnsafeMutableRawPointer?
    /// A frame too large for the ring, being read (its prefix is written in
    /// front of it once complete, so it can be handed on whole).
    var large = LargeFrame(headroom: Int(TOBY_PREFIX_SIZE))
    var output = OutputQueue()
    var interest = UInt32(TOBY_LOOP_READ)
    /// Tasks waiting for the output queue (async sends, flush, close).
    var outputWaiters: [OutputWaiter] = []
    var nextWaiterID = 0
    var isDirty = false
    /// This loop's counters for the server (loop only: plain additions).
    let counters: ServerCounters
    /// This connection's own counters (loop only; unchecked for the same
    /// reason as the server's, see `ServerCounters`).
    @exclusivity(unchecked) var ownFigures = TobyConnection.Statistics()
    /// The reader's `bytes_read` already counted (a direct fill's result
    /// leaves out what it read ahead into the ring and includes what it took
    /// from there, so the reader's own total is what is counted).
    @exclusivity(unchecked) var readerBytesCounted: UInt64 = 0
    /// Unique in the process; set when the server counts the connection.
    var id: UInt64 = 0
    /// Other threads' work was left for the output queue to drain.
    var foreignDeferred = false
    /// The connection's own deadline (read timeout, linger check, linger).
    var deadline: UInt64 = .max
    var timerAt: UInt64 = .max
    /// When a connection shutting down (or lingering) is reset regardless.
    var resetDeadline: UInt64 = .max
    var lingerInterval: UInt64 = 1_000_000
    /// Set while the handler runs; it is moved out of `handler` meanwhile,
    /// so a handler that closes its connection does not overlap itself.
    var inHandler = false
    /// A close that happened during a handler call, reported after it.
    var closedDuringHandler: TobyError??

    // Guarded by loop.lock: work handed over by other threads.
    var foreign: [[UInt8]] = []
    var foreignBytes = 0
    var foreignClose: CloseKind?
    var foreignNotified = false
    var foreignOpen = true
    var foreignWaiters = 0

    init(fd: Int32, peer: String, token: UInt64, loop: EventLoop, server: ServerCore) {
        self.fd = fd
        self.peer = peer
        self.token = token
        self.loop = loop
        self.server = server
        let configuration = server.configuration
        self.configuration = configuration
        order = configuration.byteOrder == .littleEndian ? TOBY_LITTLE_ENDIAN : TOBY_BIG_ENDIAN
        machine = ConnectionStateMachine(
            highWater: server.options.backPressure.highWaterMark, lowWater: server.options.backPressure.lowWaterMark)
        shutdownLinger = server.options.shutdownLinger.clampedNanoseconds
        // A client's connection (async connect) counts for nobody but itself.
        counters = server.listenFD >= 0 ? loop.counters(for: server) : ServerCounters()
        reader = .allocate(capacity: 1)
        reader.initialize(to: toby_reader())
    }

    deinit {
        reader.deallocate()
    }

    // MARK: Sending

    /// Sends one message.
    ///
    /// - Throws: ``TobyError/frameTooLarge(length:limit:prefix:)`` if it is
    ///   over `maxFrameLength` (nothing is sent), ``TobyError/closed`` once the
    ///   connection is closing or closed.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(TobyError) {
        try checkLength(bytes.count)
        if try queueIfOnLoop(1, { $0.append(payload: bytes, order: $1, pool: $2) }) { return }
        try sendForeign([[UInt8](bytes)], bytes: bytes.count)
    }

    /// Sends one message held by an array (retained, not copied, when large).
    public func send(_ message: [UInt8]) throws(TobyError) {
        try checkLength(message.count)
        if try queueIfOnLoop(1, { $0.append(payload: message, order: $1, pool: $2) }) { return }
        try sendForeign([message], bytes: message.count)
    }

    /// Sends the UTF-8 bytes of `text` as one message.
    public func send(_ text: String) throws(TobyError) {
        try send(Array(text.utf8))
    }

    /// Sends several messages, in order.
    public func send(contentsOf messages: [[UInt8]]) throws(TobyError) {
        var total = 0
        for message in messages {
            try checkLength(message.count)
            total += message.count
        }
        let queued = try queueIfOnLoop(messages.count) { queue, order, pool in
            for message in messages { queue.append(payload: message, order: order, pool: pool) }
        }
        if !queued { try sendForeign(messages, bytes: total) }
    }

    /// On this connection's loop: queues with `body` (given the output queue,
    /// the byte order and the loop's buffer pool) and returns true, or throws
    /// if sends are refused now. Elsewhere: false, for the caller to hand the
    /// message over.
    @inline(__always)
    private func queueIfOnLoop(
        _ count: Int, _ body: (inout OutputQueue, toby_byte_order, BufferPool) -> Void
    ) throws(TobyError) -> Bool {
        guard loop.isCurrent else { return false }
        guard machine.state.acceptsSends else { throw machine.sendError }
        body(&output, order, loop.outputPool)
        countSent(count)
        markDirty()
        return true
    }

    /// Sends a received message on, unchanged. On the loop that lent it,
    /// its frame goes out straight from the ring (prefix and all, without
    /// re-encoding) when the byte orders match.
    public func send(_ message: TobyMessage) throws(TobyError) {
        if loop.isCurrent {
            if let framed = message.framed, message.order == order {
                guard machine.state.acceptsSends else { throw machine.sendError }
                try checkLength(message.count)
                output.append(borrowedFrame: framed, pool: loop.outputPool)
                countSent(1)
                markDirty()
                return
            }
            if let current = loop.currentDirect, message.order == order,
                current.withUnsafeBytes({ $0.baseAddress.map { $0 + Int(TOBY_PREFIX_SIZE) } }) == message.bytes.baseAddress
            {
                // A frame larger than the ring, framed in its own array:
                // retain the array and send it as it is.
                guard machine.state.acceptsSends else { throw machine.sendError }
                try checkLength(message.count)
                output.append(framedArray: current)
                countSent(1)
                markDirty()
                return
            }
        }
        try send(message.bytes)
    }

    /// Sends every message of a batch on, unchanged and in order: echoing a
    /// whole read costs one iovec per contiguous run of the ring.
    public func send(contentsOf messages: TobyMessages) throws(TobyError) {
        guard loop.isCurrent, machine.state.acceptsSends, loop.currentDirect == nil else {
            for message in messages { try send(message) }
            return
        }
        let limit = configuration.maxFrameLength
        let tooLarge = output.append(forwarding: messages, order: order, limit: limit, pool: loop.outputPool)
        countSent(tooLarge ?? messages.count)
        markDirty()
        if let index = tooLarge {
            throw .frameTooLarge(length: UInt64(messages[index].count), limit: UInt64(limit), prefix: [])
        }
    }

    /// Sends everything queued, then ends our side of the stream (the peer
    /// reads every message, then end of stream). Reading goes on until the
    /// peer ends too (at most 30 s), then the descriptor is closed and the
    /// handler's ``TobyServerHandler/connectionClosed(_:error:)`` runs.
    /// Safe from any thread; later sends throw ``TobyError/closed``.
    public func close() {
        if loop.isCurrent {
            closeOnLoop()
        } else {
            requestForeign(.graceful)
        }
    }

    /// ``close()`` by an owner that will not read again (an async task that
    /// ended): what the peer still sends is discarded, not delivered.
    func closeDiscardingInput() {
        if loop.isCurrent {
            closeOnLoop(discardInput: true)
        } else {
            requestForeign(.discarding)
        }
    }

    /// Drops everything queued and resets the connection (`SO_LINGER` 0:
    /// the peer gets a reset, not an end of stream). Safe from any thread.
    public func abort() {
        if loop.isCurrent {
            perform(machine.finish(nil, abortive: true))
        } else {
            requestForeign(.abortive)
        }
    }

    /// Bytes queued for this connection and not yet taken by the kernel
    /// (exact on the loop thread; a snapshot elsewhere).
    public var queuedBytes: Int {
        if loop.isCurrent { return output.pendingBytes + loop.lock.withLock { foreignBytes } }
        return loop.lock.withLock { foreignBytes }
    }

    @inline(__always)
    func checkLength(_ count: Int) throws(TobyError) {
        let limit = configuration.maxFrameLength
        if count > limit {
            throw .frameTooLarge(length: UInt64(count), limit: UInt64(limit), prefix: [])
        }
    }

    @inline(__always)
    func markDirty() {
        if !isDirty {
            isDirty = true
            loop.markDirty(self)
        }
    }
}
