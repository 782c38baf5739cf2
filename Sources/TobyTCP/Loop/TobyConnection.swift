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

    /// The lifecycle, one state at a time instead of interacting flags.
    enum State: Equatable {
        /// Reading and writing.
        case open
        /// The peer ended its stream; we may still write.
        case inputEnded
        /// The server is shutting down and this connection outlived its
        /// grace period: no message is delivered any more (what the peer
        /// still sends is read and discarded, so it is never reset), while
        /// sends are accepted until the owner closes: replies owed for
        /// messages already delivered still go out.
        case quiescing(inputEnded: Bool)
        /// The owner closed: queued output drains, then our side ends and
        /// the connection goes on as `then` says.
        case closing(then: AfterDrain)
        /// Our side ended; reading (and delivering) until the peer ends, or
        /// the linger runs out.
        case halfClosed
        /// Our side ended and nothing is delivered any more: what the peer
        /// still sends is read and discarded until it ends too, or until
        /// everything we sent was acknowledged and the peer has gone quiet,
        /// so that closing sends no reset that would destroy replies in
        /// flight. Reset if the peer is still sending when the linger ends.
        case lingering
        /// Input failed: queued output drains, then the descriptor closes.
        case draining
        /// Over: the descriptor is closed.
        case closed

        /// What follows once a closing connection's output has drained.
        enum AfterDrain: Equatable {
            /// The peer ended already: close the descriptor.
            case close
            /// Half-close and go on delivering until the peer ends.
            case readUntilEnd
            /// Half-close, then linger, discarding input (``lingering``).
            case linger
        }

        /// Whether the socket is read in this state.
        var reads: Bool {
            switch self {
            case .open, .halfClosed, .closing(then: .readUntilEnd), .closing(then: .linger),
                .quiescing(inputEnded: false), .lingering:
                return true
            default:
                return false
            }
        }

        /// Whether what is read is thrown away instead of delivered.
        var discards: Bool {
            switch self {
            case .quiescing, .closing(then: .linger), .lingering: return true
            default: return false
            }
        }

        var acceptsSends: Bool {
            switch self {
            case .open, .inputEnded, .quiescing: return true
            default: return false
            }
        }
    }

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
    private(set) var server: ServerCore?
    private let order: toby_byte_order
    private let highWater: Int
    private let lowWater: Int
    private let shutdownLinger: UInt64

    // Loop thread only.
    private(set) var state = State.open
    private var handler: (any TobyServerHandler)?
    let reader: UnsafeMutablePointer<toby_reader>
    private var ring: UnsafeMutableRawPointer?
    /// A frame too large for the ring, being read (its prefix is written in
    /// front of it once complete, so it can be handed on whole).
    private var large = LargeFrame(headroom: Int(TOBY_PREFIX_SIZE))
    private(set) var output = OutputQueue()
    private var interest = UInt32(TOBY_LOOP_READ)
    /// Reading stopped because the output queue is above its high-water mark.
    private var readPaused = false
    /// Whether a full output queue pauses reading (a server's back-pressure:
    /// no new requests while the replies back up). An async client clears
    /// it: its sending task already suspends at the high-water mark, and a
    /// client that stopped reading while its output is full deadlocks with
    /// any server that does the same (an echo of a large one-way stream).
    var pausesReadingForOutput = true
    /// Reading stopped because an async consumer has too much unread.
    private var inboundHeld = false
    private var readHeld: Bool { readPaused || inboundHeld }
    /// Whether reads now go to the handler (the state delivers, nothing holds them).
    private var delivers: Bool { state.reads && !state.discards && !readHeld }
    /// Whether the socket is to be read now: to deliver, or to discard (never
    /// held: input we no longer want must not back up into a reset).
    private var wantsInput: Bool { state.reads && (state.discards || !readHeld) }
    /// Tasks waiting for the output queue (async sends, flush, close).
    private var outputWaiters: [OutputWaiter] = []
    private var nextWaiterID = 0
    private var isDirty = false
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
    private var foreignDeferred = false
    private var deadline: UInt64 = .max
    private var timerAt: UInt64 = .max
    /// When a connection shutting down (or lingering) is reset regardless.
    private var resetDeadline: UInt64 = .max
    /// Lingering: no byte arrived since the last check.
    private var lingerQuiet = true
    private var lingerInterval: UInt64 = 1_000_000
    private var failure: TobyError?
    /// Set while the handler runs; it is moved out of `handler` meanwhile,
    /// so a handler that closes its connection does not overlap itself.
    private var inHandler = false
    /// A close that happened during a handler call, reported after it.
    private var closedDuringHandler: TobyError??

    // Guarded by loop.lock: work handed over by other threads.
    private var foreign: [[UInt8]] = []
    private var foreignBytes = 0
    private var foreignClose: CloseKind?
    private var foreignNotified = false
    private var foreignOpen = true
    private var foreignWaiters = 0

    enum CloseKind { case graceful, discarding, abortive }

    init(fd: Int32, peer: String, token: UInt64, loop: EventLoop, server: ServerCore) {
        self.fd = fd
        self.peer = peer
        self.token = token
        self.loop = loop
        self.server = server
        let configuration = server.configuration
        self.configuration = configuration
        order = configuration.byteOrder == .littleEndian ? TOBY_LITTLE_ENDIAN : TOBY_BIG_ENDIAN
        highWater = server.options.writeHighWaterMark
        lowWater = server.options.writeLowWaterMark
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
        guard state.acceptsSends else { throw sendError() }
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
                guard state.acceptsSends else { throw sendError() }
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
                guard state.acceptsSends else { throw sendError() }
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
        guard loop.isCurrent, state.acceptsSends, loop.currentDirect == nil else {
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
            finish(error: nil, abortive: true)
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
    private func checkLength(_ count: Int) throws(TobyError) {
        let limit = configuration.maxFrameLength
        if count > limit {
            throw .frameTooLarge(length: UInt64(count), limit: UInt64(limit), prefix: [])
        }
    }

    private func sendError() -> TobyError {
        failure ?? .closed
    }

    @inline(__always)
    private func markDirty() {
        if !isDirty {
            isDirty = true
            loop.markDirty(self)
        }
    }

    // MARK: Other threads

    private func sendForeign(_ messages: [[UInt8]], bytes: Int) throws(TobyError) {
        let limit = configuration.maxQueuedSendBytes
        let mayWait = !EventLoop.onAnyLoop
        loop.lock.lock()
        while foreignOpen && mayWait && foreignBytes > 0 && foreignBytes + bytes > limit {
            foreignWaiters += 1
            loop.lock.wait()
            foreignWaiters -= 1
        }
        guard foreignOpen else {
            loop.lock.unlock()
            throw TobyError.closed
        }
        foreign.append(contentsOf: messages)
        foreignBytes += bytes
        let wake = notifyLocked()
        loop.lock.unlock()
        if wake { loop.wakeUp() }
    }

    private func requestForeign(_ kind: CloseKind) {
        loop.lock.lock()
        if foreignOpen {
            if kind == .abortive || foreignClose == nil { foreignClose = kind }
            foreignOpen = false
        }
        let wake = notifyLocked()
        loop.lock.unlock()
        if wake { loop.wakeUp() }
    }

    /// With loop.lock held: tells the loop this connection has work, once.
    /// Returns whether the caller must wake the loop.
    private func notifyLocked() -> Bool {
        if foreignNotified { return false }
        guard loop.enqueueLocked(.connection(self)) else { return false }
        foreignNotified = true
        return loop.inboxHasOneJob
    }

    /// On the loop: takes what other threads sent, unless the output queue
    /// is above its high-water mark (then the senders stay blocked, which
    /// is the back-pressure, and the work is taken once it drains).
    func takeForeignWork() {
        loop.assertOnLoop()
        loop.lock.lock()
        foreignNotified = false
        guard state != .closed else {
            loop.lock.unlock()
            return
        }
        if output.pendingBytes >= highWater && foreignClose != .abortive {
            loop.lock.unlock()
            foreignDeferred = true  // taken when the queue drains (flushOutput)
            return
        }
        foreignDeferred = false
        let messages = foreign
        let close = foreignClose
        foreign.removeAll()
        foreignBytes = 0
        foreignClose = nil
        if foreignWaiters > 0 { loop.lock.broadcast() }
        loop.lock.unlock()
        if close == .abortive {
            finish(error: nil, abortive: true)
            return
        }
        if state.acceptsSends {
            for message in messages { output.append(payload: message, order: order, pool: loop.outputPool) }
            countSent(messages.count)
            if !messages.isEmpty { markDirty() }
        }
        if close == .graceful { closeOnLoop() }
        if close == .discarding { closeOnLoop(discardInput: true) }
    }

    /// On the loop, as it stops: work that arrived too late is refused.
    func refuseForeignWork() {
        loop.assertOnLoop()
        loop.lock.lock()
        foreignOpen = false
        foreign.removeAll()
        foreignBytes = 0
        loop.lock.broadcast()
        loop.lock.unlock()
    }

    // MARK: Loop events

    func open() {
        loop.assertOnLoop()
        counters.figures.connectionsAccepted &+= 1
        ownFigures.openedAt = .now
        server?.options.observer?.connectionOpened(observerEvent)
        handler = server?.makeHandler(self)
        armReadDeadline()
        withHandler { $0.connectionOpened(self) }
        flushIfNeeded()
    }

    func handle(events: UInt32) {
        loop.assertOnLoop()
        let hangup = UInt32(TOBY_LOOP_HANGUP | TOBY_LOOP_ERROR)
        if events & UInt32(TOBY_LOOP_WRITE) != 0 && state != .closed {
            flushOutput()
        }
        guard state != .closed else { return }
        if state.discards && state.reads {
            if events & (UInt32(TOBY_LOOP_READ) | hangup) != 0 { discardInput() }
        } else if delivers {
            if events & (UInt32(TOBY_LOOP_READ) | hangup) != 0 { readAndDeliver() }
        } else if events & hangup != 0 {
            // A hang-up or error while we are not reading (paused, draining,
            // waiting for the owner): level-triggered, it would be reported
            // again at once, so settle it now. A write says what happened;
            // if nothing is queued, the socket is simply gone.
            flushOutput()
            if state != .closed && output.isEmpty {
                finish(error: failure ?? socketError(), abortive: false)
            }
        }
    }

    /// The pending socket error (SO_ERROR), if any.
    private func socketError() -> TobyError? {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0 && code != 0 {
            // The call that would have met it: EPIPE only ever fails a send.
            return .system(operation: code == EPIPE ? "sendmsg" : "recvmsg", errno: code)
        }
        return nil
    }

    func timerFired() {
        loop.assertOnLoop()
        timerAt = .max
        guard state != .closed else { return }
        expireOutputWaiters()
        guard state != .closed else { return }
        let now = loop.now
        if now >= resetDeadline {
            // Shutting down and past the linger: what is left is reset,
            // unless the peer has everything we sent and has gone quiet.
            finish(error: nil, abortive: !(state == .lingering && lingerQuiet && unacknowledgedBytes == 0))
            return
        }
        guard deadline != .max else {
            armTimer()
            return
        }
        if deadline > now {
            // Reset since this entry was pushed: wait for the current one.
            armTimer()
            return
        }
        deadline = .max
        switch state {
        case .open:
            // Paused by back-pressure: the deadline starts again on resuming.
            if readHeld { return }
            if let timeout = configuration.readTimeout {
                // No frame completed in time: a silent or slow-loris peer.
                counters.figures.readTimeouts &+= 1
                failInput(.timedOut(timeout))
            }
        case .lingering:
            checkLinger()
        case .halfClosed, .closing, .draining:
            // The peer neither ended nor read within the linger time.
            finish(error: failure ?? .timedOut(.nanoseconds(Int64(TobyConnection.lingerNanoseconds))), abortive: true)
        case .inputEnded, .quiescing, .closed:
            break
        }
    }

    // MARK: Shutting down

    /// On the loop, when the server's grace period is over: stop delivering
    /// messages, let the owner send what it owes and close (the handler's
    /// ``TobyServerHandler/shouldQuiesce(on:)``; an async task sees the end of
    /// its inbound and returns), then half-close and linger. Whatever is
    /// still open at `resetAt` (monotonic ns) is reset.
    func quiesce(resetAt: UInt64) {
        loop.assertOnLoop()
        guard state != .closed else { return }
        resetDeadline = min(resetDeadline, resetAt)
        armTimer()
        switch state {
        case .open, .inputEnded:
            state = .quiescing(inputEnded: state == .inputEnded)
            readPaused = false
            inboundHeld = false
            updateInterest()
            withHandler { $0.shouldQuiesce(on: self) }
            flushIfNeeded()
        case .closing(then: .readUntilEnd):
            state = .closing(then: .linger)
            updateInterest()
        case .halfClosed:
            startLingering()
        default:
            break
        }
    }

    /// Reads and drops what the peer sends (nothing is delivered in this
    /// state); its end of stream or error moves the state on.
    private func discardInput() {
        let size = 64 << 10
        let buffer = loop.scratchBuffer(size)
        for _ in 0..<16 {
            let n = recv(fd, buffer, size, Int32(MSG_DONTWAIT))
            if n > 0 {
                lingerQuiet = false
                countReceived(bytes: n)
                continue
            }
            if n == 0 {
                discardingInputEnded()
                return
            }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return }
            finish(error: .system(operation: "recv", errno: code), abortive: false)
            return
        }
    }

    private func discardingInputEnded() {
        switch state {
        case .quiescing:
            state = .quiescing(inputEnded: true)
            updateInterest()
        case .closing(then: .linger):
            state = .closing(then: .close)
            updateInterest()
            flushIfNeeded()
        case .lingering:
            // Both sides ended: nothing can reset what we sent.
            finish(error: nil, abortive: false)
        default:
            break
        }
    }

    /// Our side ended (everything queued went out): linger until the peer
    /// ends, or has everything and goes quiet, or the linger runs out.
    private func startLingering() {
        state = .lingering
        if resetDeadline == .max { resetDeadline = loop.now &+ shutdownLinger }
        lingerQuiet = true
        lingerInterval = 1_000_000
        deadline = loop.now &+ lingerInterval
        updateInterest()
        armTimer()
    }

    /// A linger check: once every byte we sent is acknowledged by the peer
    /// and nothing arrived since the last check, closing is clean (no reset
    /// can destroy a reply in flight). Checks back off to every 100 ms.
    private func checkLinger() {
        if lingerQuiet && unacknowledgedBytes == 0 {
            finish(error: nil, abortive: false)
            return
        }
        lingerQuiet = true
        lingerInterval = min(lingerInterval * 2, 100_000_000)
        deadline = loop.now &+ lingerInterval
        armTimer()
    }

    private var unacknowledgedBytes: Int { TobyTCP.unacknowledgedBytes(fd) }

    /// After a batch (or a job) queued output: write it, and turn what the
    /// socket did not take of lent ring bytes into owned copies.
    func flushAfterBatch() {
        loop.assertOnLoop()
        isDirty = false
        guard state != .closed else { return }
        flushOutput()
        output.detachBorrowed()
    }

    private func flushIfNeeded() {
        if isDirty { return }  // the loop flushes it
        if !output.isEmpty || state != .open { flushOutput() }
    }

    // MARK: Reading

    private func attachRing() -> Bool {
        if ring != nil { return true }
        let capacity = configuration.ringCapacity
        let buffer = loop.ringPool(capacity: capacity).take()
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        if reader.pointee.io == nil {
            let rc = toby_reader_init(reader, bytes, capacity, UInt64(configuration.maxFrameLength), order, fd, toby_io_system())
            if rc != 0 {
                loop.ringPool(capacity: capacity).give(buffer)
                return false
            }
        } else if toby_reader_set_ring(reader, bytes, capacity) != 0 {
            loop.ringPool(capacity: capacity).give(buffer)
            return false
        }
        ring = buffer
        return true
    }

    /// Gives the ring back to the loop's pool once nothing is buffered.
    private func detachRingIfIdle() {
        guard let ring, toby_reader_buffered(reader) == 0 else { return }
        if toby_reader_set_ring(reader, nil, 0) == 0 {
            loop.ringPool(capacity: configuration.ringCapacity).give(ring)
            self.ring = nil
        }
    }

    /// One read of the socket, then every complete frame it finished goes to
    /// the handler as one batch; then the end of stream or the error, if
    /// that is what the read found.
    private func readAndDeliver() {
        guard attachRing() else {
            failInput(.system(operation: "toby_reader_init", errno: EINVAL))
            return
        }
        var didRead = false
        var count = 0
        decoding: while delivers {
            var frame = toby_frame()
            let status = collectFrames(&count, &frame)
            switch status {
            case Int32(TOBY_FRAME):
                // A frame wrapped: the scratch copy is single, deliver first.
                deliver(count)
                count = 0
            case Int32(TOBY_NEED_MORE):
                // Deliver before the ring is written again: the batch points into it.
                deliver(count)
                count = 0
                if didRead { break decoding }
                didRead = true
                let n = toby_reader_fill(reader, 0)
                if n > 0 { countReaderBytes() }
                if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) { break decoding }
            // Data, end of stream or an error: next() tells which, in order.
            case Int32(TOBY_FRAME_DIRECT):
                deliver(count)
                count = 0
                if !readDirect(frame, didRead: &didRead) { break decoding }
            case Int32(TOBY_END):
                deliver(count)
                count = 0
                inputEndedCleanly()
                break decoding
            default:
                deliver(count)
                count = 0
                failInput(readError(status, frame))
                break decoding
            }
        }
        deliver(count)
        if state != .closed { detachRingIfIdle() }
    }

    /// Decodes complete ring frames into the loop's batch array, from
    /// `count` on, until the next status that is not a plain frame (which it
    /// returns, with `frame` describing it), or until a frame that wrapped
    /// around the ring's end was made contiguous (returns TOBY_FRAME: the
    /// batch must be delivered before another wrap reuses the scratch).
    /// The hot loop of the server: locals only, one C call per frame.
    @inline(__always)
    private func collectFrames(_ count: inout Int, _ frame: inout toby_frame) -> Int32 {
        let loop = self.loop
        let reader = self.reader
        let order = self.order
        let ringStart = UnsafeRawPointer(ring!)
        let prefixSize = Int(TOBY_PREFIX_SIZE)
        var batch = loop.batch
        var capacity = loop.batchCapacity
        let spans = loop.spans
        var n = count
        defer { count = n }
        while true {
            // The common case in C, many frames per call.
            if n == capacity {
                loop.reserveBatch(n + 1)
                batch = loop.batch
                capacity = loop.batchCapacity
            }
            let room = min(capacity - n, EventLoop.spanCapacity)
            let taken = toby_reader_take(reader, spans, room)
            for i in 0..<taken {
                batch[n + i] = TobyMessage(
                    start: UnsafeRawPointer(spans[i].data), count: spans[i].len, prefixed: true, order: order)
            }
            n += taken
            if taken == room { continue }
            // Anything else (a frame that wraps, a direct frame, the end, an
            // error, or simply no complete frame) through the general path.
            let status = toby_reader_next(reader, &frame)
            guard status == Int32(TOBY_FRAME) else { return status }
            if n == capacity {
                loop.reserveBatch(n + 1)
                batch = loop.batch
                capacity = loop.batchCapacity
            }
            let length = Int(frame.length)
            let start = UnsafeRawPointer(frame.data.0)
            if frame.len.1 == 0 {
                var framed: UnsafeRawBufferPointer?
                if let start, start - prefixSize >= ringStart {
                    framed = UnsafeRawBufferPointer(start: start - prefixSize, count: length + prefixSize)
                }
                batch[n] = TobyMessage(bytes: UnsafeRawBufferPointer(start: start, count: length), framed: framed, order: order)
                n += 1
                toby_reader_consume(reader)
                continue
            }
            // The payload wraps around the ring's end: make it contiguous once.
            let scratch = loop.scratchBuffer(length)
            scratch.copyMemory(from: start!, byteCount: frame.len.0)
            (scratch + frame.len.0).copyMemory(from: frame.data.1!, byteCount: frame.len.1)
            batch[n] = TobyMessage(bytes: UnsafeRawBufferPointer(start: scratch, count: length), framed: nil, order: order)
            n += 1
            toby_reader_consume(reader)
            return Int32(TOBY_FRAME)
        }
    }

    /// A frame too large for the ring: its payload is read straight into
    /// storage of its own that follows the bytes received (``LargeFrame``,
    /// the rule the blocking receiver has too), so a peer that announces
    /// much and sends little costs little. Complete, it is lent to the
    /// handler with its prefix in front, so forwarding it (or an async
    /// consumer) retains the array instead of copying it. Returns true once
    /// the frame was delivered and decoding may go on.
    private func readDirect(_ frame: toby_frame, didRead: inout Bool) -> Bool {
        let total = Int(frame.length)
        if !large.isActive || large.length != total {
            large.start(length: total, arrived: Int(toby_reader_buffered(reader)) + receivedUnread(fd))
        }
        let fd = self.fd
        let reader = self.reader
        while !large.isComplete {
            // Buffered bytes are taken without a read; a read only once per event.
            if toby_reader_buffered(reader) == 0 {
                if didRead { return false }
                didRead = true
            }
            let n = large.read(queued: { receivedUnread(fd) }) { room, count in
                toby_reader_direct_fill(reader, room, count, 0)
            }
            if n > 0 { countReaderBytes() }
            if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) { return false }
            if n < 0 {
                var failed = toby_frame()
                let status = toby_reader_next(reader, &failed)
                failInput(readError(status < 0 ? status : Int32(n), failed))
                return false
            }
        }
        var framed = large.take()
        framed.withUnsafeMutableBytes {
            toby_prefix_encode(UInt64(total), order, $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        loop.currentDirect = framed
        framed.withUnsafeBytes { bytes in
            let payload = UnsafeRawBufferPointer(rebasing: bytes[Int(TOBY_PREFIX_SIZE)...])
            loop.batch[0] = TobyMessage(bytes: payload, framed: nil, order: order)
            deliver(1)
        }
        loop.currentDirect = nil
        return state.reads
    }

    private func deliver(_ count: Int) {
        guard count > 0, state != .closed else { return }
        armReadDeadline()
        countDelivered(count)
        let messages = TobyMessages(base: loop.batch, count: count)
        withHandler { $0.received(messages, on: self) }
        // Replies of this batch (to this or other connections) go out now,
        // before the ring that lent the messages is read into again.
        loop.flushDirty()
    }

    private func readError(_ status: Int32, _ frame: toby_frame) -> TobyError {
        switch status {
        case TOBY_EFRAMETOOLARGE:
            let prefix = withUnsafeBytes(of: frame.prefix) { Array($0) }
            return .frameTooLarge(length: frame.length, limit: UInt64(configuration.maxFrameLength), prefix: prefix)
        case TOBY_ETRUNCATED:
            return .truncatedFrame(expected: frame.expected, received: frame.received)
        default:
            return TobyError.fromCode(Int(status), operation: "recvmsg")
        }
    }

    // MARK: State transitions

    private func inputEndedCleanly() {
        switch state {
        case .open:
            state = .inputEnded
            withHandler { $0.inputEnded(on: self) }
            flushIfNeeded()
            updateInterest()
        case .halfClosed:
            finish(error: nil, abortive: false)
        case .closing:
            state = .closing(then: .close)
            flushIfNeeded()
        default:
            break
        }
    }

    private func failInput(_ error: TobyError) {
        guard state != .closed else { return }
        failure = error
        if case .system(_, let code) = error, code == ECONNRESET || code == EPIPE || code == ETIMEDOUT {
            // The peer is gone: nothing queued can reach it.
            finish(error: error, abortive: false)
            return
        }
        if case .frameTooLarge = error {
            // The stream cannot be resynchronised; stop the peer sending.
            _ = Glibc.shutdown(fd, Int32(SHUT_RD))
        }
        // Send what was queued for the complete messages, then close.
        state = .draining
        setLinger()
        flushOutput()
    }

    /// Starts the owner's close: everything accepted goes out, then our
    /// side ends. `discardInput`: deliver nothing more and linger (the owner
    /// will not read again: an async task that ended); otherwise go on
    /// delivering until the peer ends too.
    func closeOnLoop(discardInput: Bool = false) {
        loop.assertOnLoop()
        switch state {
        case .open:
            state = .closing(then: discardInput ? .linger : .readUntilEnd)
        case .quiescing(let inputEnded):
            state = .closing(then: inputEnded ? .close : .linger)
        case .inputEnded:
            state = .closing(then: .close)
        default:
            return
        }
        absorbForeignSends()
        setLinger()
        updateInterest()
        if !isDirty { flushOutput() }
    }

    /// Writes what the socket takes; applies back-pressure and finishes
    /// closes once the queue is empty.
    private func flushOutput() {
        guard state != .closed else { return }
        if !output.isEmpty {
            let unsent = output.pendingBytes
            let result = output.flush(fd: fd, iov: loop.iov, pool: loop.outputPool)
            countWritten(bytes: unsent - output.pendingBytes)
            switch result {
            case .drained:
                break
            case .wouldBlock:
                if pausesReadingForOutput && output.pendingBytes >= highWater && !readPaused {
                    readPaused = true
                    counters.figures.readPauses &+= 1
                }
                if output.pendingBytes <= lowWater { resumeOutputWaiters() }
                updateInterest()
                return
            case .failed(let code):
                finish(error: .system(operation: "sendmsg", errno: code), abortive: false)
                return
            }
        }
        // Drained.
        var resume = false
        if readPaused && output.pendingBytes <= lowWater {
            readPaused = false
            armReadDeadline()
            resume = true
        }
        switch state {
        case .closing(let then):
            _ = Glibc.shutdown(fd, Int32(SHUT_WR))
            switch then {
            case .close:
                finish(error: nil, abortive: false)
                return
            case .readUntilEnd:
                state = .halfClosed
            case .linger:
                startLingering()
            }
        case .draining:
            finish(error: failure, abortive: false)
            return
        default:
            break
        }
        updateInterest()
        // Work from other threads arrives with a job of its own; only work
        // deferred by back-pressure needs taking here (no lock per flush).
        if foreignDeferred { takeForeignWork() }
        // Frames may wait in the ring with nothing new on the socket, which
        // level-triggered readiness would never report: decode them now.
        resumeOutputWaiters()
        if resume && delivers { readAndDeliver() }
    }

    private func updateInterest() {
        guard state != .closed else { return }
        var wanted: UInt32 = 0
        if wantsInput { wanted |= UInt32(TOBY_LOOP_READ) }
        if !output.isEmpty { wanted |= UInt32(TOBY_LOOP_WRITE) }
        if wanted != interest {
            if loop.setInterest(self, wanted) == 0 { interest = wanted }
        }
    }

    private func armReadDeadline() {
        guard let timeout = configuration.readTimeout, state == .open else { return }
        deadline = loop.now &+ timeout.clampedNanoseconds
        armTimer()
    }

    private func setLinger() {
        deadline = loop.now &+ TobyConnection.lingerNanoseconds
        armTimer()
    }

    /// Keeps one heap entry no later than `deadline` (the heap is lazy: a
    /// later deadline is checked when the entry surfaces).
    private func armTimer() {
        var next = min(deadline, resetDeadline)
        for waiter in outputWaiters where waiter.deadline < next { next = waiter.deadline }
        guard next != .max, next < timerAt else { return }
        timerAt = next
        loop.schedule(deadline: next, token: token)
    }

    /// Closing: sends from other threads that were accepted (their `send`
    /// returned) go into the output queue now, whatever its size; later
    /// ones are refused.
    private func absorbForeignSends() {
        loop.lock.lock()
        foreignOpen = false
        let messages = foreign
        foreign.removeAll()
        foreignBytes = 0
        foreignDeferred = false
        if foreignWaiters > 0 { loop.lock.broadcast() }
        loop.lock.unlock()
        for message in messages { output.append(payload: message, order: order, pool: loop.outputPool) }
        countSent(messages.count)
    }

    /// Closes the descriptor and tells the handler; the connection is over.
    private func finish(error: TobyError?, abortive: Bool) {
        guard state != .closed else { return }
        state = .closed
        // Later sends report why it ended (a reset is not our own close).
        if failure == nil { failure = error }
        counters.figures.connectionsClosed &+= 1
        server?.options.observer?.connectionClosed(observerEvent, error: error)
        switch error {
        case .frameTooLarge?: counters.figures.framesTooLarge &+= 1
        case .truncatedFrame?: counters.figures.framesTruncated &+= 1
        case .system(_, let code)? where code == ECONNRESET || code == EPIPE: counters.figures.resets &+= 1
        default: break
        }
        loop.lock.lock()
        foreignOpen = false
        foreign.removeAll()
        foreignBytes = 0
        foreignClose = nil
        loop.lock.broadcast()
        loop.lock.unlock()
        if abortive {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        loop.forget(self)
        _ = Glibc.close(fd)
        let unsent = output.pendingBytes
        output.discard(pool: loop.outputPool)
        if let ring {
            loop.ringPool(capacity: configuration.ringCapacity).give(ring)
            self.ring = nil
        }
        large.reset()
        failOutputWaiters(error ?? .closed, unsent: unsent)
        server?.connectionClosed()
        server = nil
        if inHandler {
            closedDuringHandler = .some(error)
        } else {
            reportClosed(error)
        }
    }

    /// Runs a handler callback with the handler moved out of its property.
    @inline(__always)
    private func withHandler(_ body: (inout any TobyServerHandler) -> Void) {
        guard var current = handler else { return }
        handler = nil
        inHandler = true
        body(&current)
        inHandler = false
        if let error = closedDuringHandler {
            closedDuringHandler = nil
            handler = current
            reportClosed(error)
        } else if state != .closed {
            handler = current
        }
    }

    private func reportClosed(_ error: TobyError?) {
        var last = handler
        handler = nil  // it may hold this connection: break the cycle
        last?.connectionClosed(self, error: error)
    }

    /// On the loop, as it stops: write what the socket takes now, then close.
    func shutDown() {
        loop.assertOnLoop()
        if state != .closed && !output.isEmpty {
            _ = output.flush(fd: fd, iov: loop.iov, pool: loop.outputPool)
        }
        finish(error: nil, abortive: false)
    }
}

// MARK: - Hooks for the async API (loop thread only)

extension TobyConnection {
    struct OutputWaiter {
        enum Kind { case room, drained }
        let id: Int
        let kind: Kind
        let deadline: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    /// Tasks suspended waiting for the output queue (loop only; tests).
    var outputWaiterCount: Int { outputWaiters.count }

    /// Whether a send now would find the queue at or above its high-water mark.
    var outputIsFull: Bool { output.pendingBytes >= highWater }

    /// Whether the connection still accepts sends.
    var acceptsSends: Bool { state.acceptsSends }

    /// Whether the descriptor is closed.
    var isClosed: Bool { state == .closed }

    /// Payload bytes allocated for, and read of, the large frame being read
    /// (loop only; tests).
    var largeFrameForTesting: (allocated: Int, filled: Int) { (large.allocated, large.filled) }

    /// Queues an owned message on the loop (the async API's send).
    func enqueueOnLoop(_ message: [UInt8]) throws(TobyError) {
        loop.assertOnLoop()
        try checkLength(message.count)
        guard state.acceptsSends else { throw sendError() }
        output.append(payload: message, order: order, pool: loop.outputPool)
        countSent(1)
        markDirty()
    }

    /// Queues already framed bytes in this connection's byte order.
    func enqueueFramedOnLoop(_ frames: [UInt8], count: Int) throws(TobyError) {
        loop.assertOnLoop()
        guard state.acceptsSends else { throw sendError() }
        output.append(framedArray: frames)
        countSent(count)
        markDirty()
    }

    /// Suspends the calling task (running on this loop) until the output
    /// queue is below its low-water mark (`.room`) or empty (`.drained`).
    /// Throws the connection's error if it fails first, `writeTimedOut` after
    /// `writeTimeout` for `.room`, or `CancellationError`.
    func waitForOutput(_ kind: OutputWaiter.Kind) async throws {
        loop.assertOnLoop()
        if kind == .room && output.pendingBytes < highWater { return }
        if kind == .drained && output.isEmpty && !isDirty { return }
        if state == .closed { throw failure ?? TobyError.closed }
        try Task.checkCancellation()
        nextWaiterID += 1
        let id = nextWaiterID
        var deadline = UInt64.max
        if kind == .room, let timeout = configuration.writeTimeout {
            deadline = loop.now &+ timeout.clampedNanoseconds
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                outputWaiters.append(OutputWaiter(id: id, kind: kind, deadline: deadline, continuation: continuation))
                armTimer()
            }
        } onCancel: {
            loop.enqueue(.run { self.cancelOutputWaiter(id) })
        }
    }

    private func cancelOutputWaiter(_ id: Int) {
        guard let index = outputWaiters.firstIndex(where: { $0.id == id }) else { return }
        outputWaiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// Resumes the waiters whose condition now holds.
    fileprivate func resumeOutputWaiters() {
        guard !outputWaiters.isEmpty else { return }
        let pending = output.pendingBytes
        var index = 0
        while index < outputWaiters.count {
            let waiter = outputWaiters[index]
            let ready = waiter.kind == .room ? pending <= lowWater : pending == 0
            if ready {
                outputWaiters.remove(at: index).continuation.resume()
            } else {
                index += 1
            }
        }
    }

    fileprivate func expireOutputWaiters() {
        guard !outputWaiters.isEmpty, let timeout = configuration.writeTimeout else { return }
        let now = loop.now
        var index = 0
        while index < outputWaiters.count {
            if outputWaiters[index].deadline <= now {
                outputWaiters.remove(at: index).continuation.resume(throwing: TobyError.writeTimedOut(timeout))
                counters.figures.writeTimeouts &+= 1
            } else {
                index += 1
            }
        }
        armTimer()
    }

    fileprivate func failOutputWaiters(_ error: TobyError, unsent: Int) {
        let waiters = outputWaiters
        outputWaiters.removeAll()
        for waiter in waiters {
            // A drained wait ends well if everything went out before a clean end.
            if waiter.kind == .drained && error == .closed && unsent == 0 {
                waiter.continuation.resume()
            } else {
                waiter.continuation.resume(throwing: error)
            }
        }
    }

    /// Stops reading because an async consumer has too much unread.
    func holdInbound() {
        loop.assertOnLoop()
        guard !inboundHeld else { return }
        inboundHeld = true
        updateInterest()
    }

    /// Reads again once the consumer caught up; frames already in the ring
    /// are delivered at once (no readiness event would report them).
    func releaseInbound() {
        loop.assertOnLoop()
        guard inboundHeld else { return }
        inboundHeld = false
        guard state != .closed else { return }
        updateInterest()
        if delivers {
            armReadDeadline()
            readAndDeliver()
        }
    }
}
