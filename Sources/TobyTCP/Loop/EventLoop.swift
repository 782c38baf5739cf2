import CTobyFrame
import Glibc

/// The thread-local that tells a loop thread which loop it runs.
private let currentLoopKey: pthread_key_t? = {
    var key = pthread_key_t()
    return pthread_key_create(&key, nil) == 0 ? key : nil
}()

/// One event-loop thread: an epoll instance, the connections it owns
/// outright, a timer heap, and an inbox through which other threads reach it.
///
/// Everything but the inbox is touched by the loop thread alone, so a
/// connection's hot path takes no lock. Other threads hand work over by
/// appending to the inbox and waking the loop (one `eventfd` write when the
/// inbox goes from empty to not empty).
///
/// Registrations carry a token (slot | generation << 32): a slot's
/// generation changes when its connection closes, so an event still queued
/// for an old connection never reaches the one that reused its slot or its
/// descriptor number.
final class EventLoop: @unchecked Sendable {
    enum Job {
        /// The connection has sends or a close from other threads.
        case connection(TobyConnection)
        /// Run a closure on the loop.
        case run(@Sendable () -> Void)
        /// Run a task's job: the loop is a task executor.
        case job(UnownedJob)
        /// Close everything and end the thread.
        case stop
    }

    /// Most events taken from one wait; also the fairness unit: each ready
    /// connection gets one read per round.
    static let eventCapacity = 256
    static let listenerFlag: UInt64 = 1 << 63
    /// Tokens of one-shot writability waits (connects in progress).
    static let waitFlag: UInt64 = 1 << 62
    /// Most connections taken from a listener per readiness event, so a
    /// connection storm cannot starve connections already served.
    static let acceptsPerEvent = 32

    let index: Int
    private let cLoop: UnsafeMutablePointer<toby_loop>
    let lock = ConditionLock()

    // Guarded by `lock`.
    private var inbox: [Job] = []
    private var stopped = false
    private var finished = false
    /// The epoll and eventfd descriptors are closed (the thread ended).
    private var descriptorsClosed = false

    // Loop thread only.
    private var slots: [TobyConnection?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private var listeners: [ListenerRegistration?] = []
    private var timers = TimerHeap()
    private let events: UnsafeMutablePointer<toby_loop_event>
    let iov: UnsafeMutablePointer<iovec>
    private(set) var now: UInt64 = monotonicNanoseconds()
    private var dirty: [TobyConnection] = []
    private var rings: [Int: BufferPool] = [:]
    let outputPool = BufferPool(size: 16 << 10, keep: 64)
    /// Room for one batch of lent messages (grown on demand).
    private(set) var batch: UnsafeMutablePointer<TobyMessage>
    private(set) var batchCapacity = 1024
    /// Where `toby_reader_take` describes the frames of a read.
    let spans: UnsafeMutablePointer<toby_span>
    static let spanCapacity = 1024
    /// Where a frame that wraps around a ring's end is made contiguous (at
    /// most one frame per batch can wrap).
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0
    /// The array of the frame larger than the ring being delivered, so a
    /// handler forwarding it retains the array instead of copying it.
    var currentDirect: [UInt8]?
    /// Tasks waiting for a descriptor to become writable (connects).
    private var writableWaits: [UInt64: (continuation: CheckedContinuation<Void, any Error>, timeout: Duration)] = [:]
    private var nextWaitID: UInt64 = 0
    /// Live connections, for tests and statistics.
    private(set) var connectionCount = 0
    /// Each server's counters on this loop, by server id (loop only).
    private var serverCounters: [Int: ServerCounters] = [:]

    private init(index: Int, loop: UnsafeMutablePointer<toby_loop>) {
        self.index = index
        self.cLoop = loop
        events = .allocate(capacity: EventLoop.eventCapacity)
        iov = .allocate(capacity: Int(TOBY_WRITER_IOV))
        batch = .allocate(capacity: batchCapacity)
        spans = .allocate(capacity: EventLoop.spanCapacity)
    }

    deinit {
        if !descriptorsClosed { toby_loop_close(cLoop) }
        cLoop.deallocate()
        events.deallocate()
        iov.deallocate()
        batch.deallocate()
        spans.deallocate()
        scratch?.deallocate()
    }

    /// Opens a loop and starts its thread.
    static func start(index: Int) throws(TobyError) -> EventLoop {
        let cLoop = UnsafeMutablePointer<toby_loop>.allocate(capacity: 1)
        let rc = toby_loop_open(cLoop, toby_loop_io_system())
        if rc != 0 {
            cLoop.deallocate()
            throw TobyError.fromCode(Int(rc), operation: "epoll_create1")
        }
        let loop = EventLoop(index: index, loop: cLoop)
        try startThread { loop.run() }
        return loop
    }

    // MARK: Other threads

    /// Whether the calling thread is this loop's.
    var isCurrent: Bool {
        guard let key = currentLoopKey else { return false }
        return pthread_getspecific(key) == Unmanaged.passUnretained(self).toOpaque()
    }

    /// Debug builds: traps unless called on this loop's thread, where all
    /// loop-only state lives (NIO's `assertInEventLoop`). Free in release.
    @inline(__always)
    func assertOnLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(isCurrent, "loop-only state touched off its loop", file: file, line: line)
    }

    /// Whether the calling thread runs any event loop (it must not block).
    static var onAnyLoop: Bool {
        guard let key = currentLoopKey else { return false }
        return pthread_getspecific(key) != nil
    }

    /// Hands a job to the loop. Returns false once the loop has stopped.
    @discardableResult
    func enqueue(_ job: Job) -> Bool {
        lock.lock()
        let accepted = enqueueLocked(job)
        let wake = accepted && inbox.count == 1
        lock.unlock()
        // The loop's own thread looks at its inbox before it waits again
        // (see `run`): no eventfd write for a task it resumes itself.
        if wake && !isCurrent { wakeUp() }
        return accepted
    }

    /// With `lock` held. The caller wakes the loop if the inbox was empty.
    func enqueueLocked(_ job: Job) -> Bool {
        if stopped { return false }
        inbox.append(job)
        return true
    }

    /// With `lock` held: whether the job just queued was the first one.
    var inboxHasOneJob: Bool { inbox.count == 1 }

    func wakeUp() {
        // Under the lock: once the thread has ended, its eventfd number is
        // closed and may belong to another file, which must not be written.
        lock.lock()
        if !descriptorsClosed { _ = toby_loop_wake(cLoop) }
        lock.unlock()
    }

    /// Stops the loop: every connection is closed (with its queued output
    /// written as far as the socket takes it now) and the thread ends.
    /// Waits for that unless called on a loop thread.
    func stop() {
        lock.lock()
        if !stopped {
            inbox.append(.stop)
            stopped = true
            if inbox.count == 1 && !descriptorsClosed { _ = toby_loop_wake(cLoop) }
        }
        if !EventLoop.onAnyLoop {
            while !finished { lock.wait() }
        }
        lock.unlock()
    }

    // MARK: The loop

    private func run() {
        if let key = currentLoopKey {
            pthread_setspecific(key, Unmanaged.passUnretained(self).toOpaque())
        }
        var jobs: [Job] = []
        running: while true {
            lock.lock()
            swap(&jobs, &inbox)
            lock.unlock()
            now = monotonicNanoseconds()
            for job in jobs {
                switch job {
                case .connection(let connection): connection.takeForeignWork()
                case .run(let body): body()
                case .job(let job): job.runSynchronously(on: asUnownedTaskExecutor())
                case .stop:
                    jobs.removeAll()
                    break running
                }
            }
            jobs.removeAll(keepingCapacity: true)
            flushDirty()
            runTimers()
            flushDirty()

            lock.lock()
            let moreJobs = !inbox.isEmpty  // queued by this thread meanwhile
            lock.unlock()
            let timeout = moreJobs ? 0 : toby_loop_timeout_ms(now, timers.nextDeadline)
            let count = toby_loop_wait(cLoop, events, Int32(EventLoop.eventCapacity), timeout)
            now = monotonicNanoseconds()
            if count < 0 {
                // Only EBADF/EFAULT/EINVAL remain, none of which a peer causes;
                // back off rather than spin if it ever happens.
                usleep(1000)
                continue
            }
            for i in 0..<Int(count) {
                dispatch(events[i])
            }
            flushDirty()
        }
        shutDownEverything()
        lock.lock()
        // A stopped loop gives its descriptors back at once, not when the
        // last reference to it goes (a group or a closed connection may
        // outlive it).
        toby_loop_close(cLoop)
        descriptorsClosed = true
        finished = true
        lock.broadcast()
        lock.unlock()
    }

    private func dispatch(_ event: toby_loop_event) {
        if EventLoop.isWritableWait(event.token) {
            endWritableWait(event.token, error: nil)
            return
        }
        if event.token & EventLoop.listenerFlag != 0 {
            if let listener = listener(for: event.token) { acceptConnections(listener) }
            return
        }
        guard let connection = connection(for: event.token) else { return }
        connection.handle(events: event.events)
    }

    private static func isWritableWait(_ token: UInt64) -> Bool {
        token & waitFlag != 0 && token & listenerFlag == 0
    }

    /// The listener registration a token names, if it is still current.
    private func listener(for token: UInt64) -> ListenerRegistration? {
        let slot = Int(token & 0xffff_ffff)
        guard slot < listeners.count, let listener = listeners[slot], listener.token == token else { return nil }
        return listener
    }

    private func connection(for token: UInt64) -> TobyConnection? {
        let slot = Int(token & 0xffff_ffff)
        guard slot < slots.count, UInt64(generations[slot]) == token >> 32 else { return nil }
        return slots[slot]
    }

    // MARK: Connections

    /// Takes ownership of an accepted, non-blocking descriptor.
    private func adopt(fd: Int32, peer: String, server: ServerCore) {
        do throws(TobyError) {
            _ = try serve(fd: fd, peer: peer, core: server)
        } catch {
            // ENOMEM or ENOSPC (max_user_watches): refuse this one, go on.
            _ = Glibc.close(fd)
            server.noteAcceptFailure(error)
        }
    }

    /// This loop's counters for `server` (made on first use; loop only).
    func counters(for server: ServerCore) -> ServerCounters {
        if let counters = serverCounters[server.id] { return counters }
        let counters = ServerCounters()
        serverCounters[server.id] = counters
        return counters
    }

    /// Called by a connection as it closes its descriptor.
    func forget(_ connection: TobyConnection) {
        let slot = Int(connection.token & 0xffff_ffff)
        guard slot < slots.count, slots[slot] === connection else { return }
        slots[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        connectionCount -= 1
    }

    func setInterest(_ connection: TobyConnection, _ interest: UInt32) -> Int32 {
        toby_loop_modify(cLoop, connection.fd, connection.token, interest)
    }

    /// The connection wrote into its output queue: flush it after the
    /// current batch or job.
    @inline(__always)
    func markDirty(_ connection: TobyConnection) {
        dirty.append(connection)
    }

    func flushDirty() {
        while !dirty.isEmpty {
            let connections = dirty
            dirty.removeAll(keepingCapacity: true)
            for connection in connections { connection.flushAfterBatch() }
        }
    }

    func ringPool(capacity: Int) -> BufferPool {
        if let pool = rings[capacity] { return pool }
        let pool = BufferPool(size: capacity, keep: 8)
        rings[capacity] = pool
        return pool
    }

    /// Room for at least `count` messages in the batch array, keeping the
    /// first `count - 1` (those already collected).
    func reserveBatch(_ count: Int) {
        guard count > batchCapacity else { return }
        var capacity = batchCapacity
        while capacity < count { capacity *= 2 }
        let grown = UnsafeMutablePointer<TobyMessage>.allocate(capacity: capacity)
        grown.moveInitialize(from: batch, count: min(count - 1, batchCapacity))
        batch.deallocate()
        batch = grown
        batchCapacity = capacity
    }

    /// A contiguous buffer of at least `count` bytes, valid until the next call.
    func scratchBuffer(_ count: Int) -> UnsafeMutableRawPointer {
        if count > scratchCapacity {
            scratch?.deallocate()
            scratch = .allocate(byteCount: count, alignment: 16)
            scratchCapacity = count
        }
        return scratch!
    }

    // MARK: Connects

    /// Suspends the calling task (on this loop) until `fd` is writable, or
    /// `timeout` passes (``TobyError/timedOut(_:)``), or the task is cancelled.
    func waitWritable(fd: Int32, timeout: Duration) async throws {
        nextWaitID += 1
        let token = EventLoop.waitFlag | nextWaitID
        let rc = toby_loop_add(cLoop, fd, token, UInt32(TOBY_LOOP_WRITE))
        if rc != 0 { throw TobyError.fromCode(Int(rc), operation: "epoll_ctl(connect)") }
        defer { _ = toby_loop_remove(cLoop, fd) }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                writableWaits[token] = (continuation, timeout)
                timers.push(deadline: now &+ timeout.clampedNanoseconds, token: token)
            }
        } onCancel: {
            self.enqueue(.run { self.endWritableWait(token, error: CancellationError()) })
        }
    }

    /// Connects waiting for writability (loop only; tests).
    var writableWaitCount: Int { writableWaits.count }

    private func endWritableWait(_ token: UInt64, error: (any Error)?) {
        guard let wait = writableWaits.removeValue(forKey: token) else { return }
        if let error {
            wait.continuation.resume(throwing: error)
        } else {
            wait.continuation.resume()
        }
    }

    /// Serves a connected, non-blocking descriptor (accepted, or a client's):
    /// registers it under a fresh token and returns its connection, opened
    /// (its handler made and told). On failure the caller still owns `fd`.
    func serve(fd: Int32, peer: String, core: ServerCore) throws(TobyError) -> TobyConnection {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = slots.count
            slots.append(nil)
            generations.append(0)
        }
        let token = UInt64(generations[slot]) << 32 | UInt64(slot)
        let rc = toby_loop_add(cLoop, fd, token, UInt32(TOBY_LOOP_READ))
        if rc != 0 {
            freeSlots.append(slot)
            throw TobyError.fromCode(Int(rc), operation: "epoll_ctl")
        }
        let connection = TobyConnection(fd: fd, peer: peer, token: token, loop: self, server: core)
        slots[slot] = connection
        connectionCount += 1
        connection.id = core.connectionOpened()
        connection.open()
        return connection
    }

    // MARK: Timers

    func schedule(deadline: UInt64, token: UInt64) {
        timers.push(deadline: deadline, token: token)
    }

    private func runTimers() {
        while let entry = timers.popDue(now: now) {
            if EventLoop.isWritableWait(entry.token) {
                if let wait = writableWaits[entry.token] {
                    endWritableWait(entry.token, error: TobyError.timedOut(wait.timeout))
                }
                continue
            }
            if entry.token & EventLoop.listenerFlag != 0 {
                if let listener = listener(for: entry.token) { resumeAccepting(listener) }
                continue
            }
            connection(for: entry.token)?.timerFired()
        }
    }

    // MARK: Listeners

    final class ListenerRegistration {
        let server: ServerCore
        let token: UInt64
        var paused = false
        var backoff: UInt64 = 0

        init(server: ServerCore, token: UInt64) {
            self.server = server
            self.token = token
        }
    }

    /// Starts accepting on the server's listener (shared by every loop,
    /// each registered exclusively so one connection wakes one loop).
    func addListener(_ server: ServerCore) throws(TobyError) {
        let slot = listeners.firstIndex(where: { $0 == nil }) ?? listeners.count
        if slot == listeners.count { listeners.append(nil) }
        let token = EventLoop.listenerFlag | UInt64(server.id & 0x7fff_ffff) << 32 | UInt64(slot)
        let rc = toby_loop_add(
            cLoop, server.listenFD, token,
            UInt32(TOBY_LOOP_READ | TOBY_LOOP_EXCLUSIVE))
        if rc != 0 { throw TobyError.fromCode(Int(rc), operation: "epoll_ctl(listener)") }
        listeners[slot] = ListenerRegistration(server: server, token: token)
    }

    /// Stops accepting for `server` on this loop.
    func removeListener(_ server: ServerCore) {
        for slot in listeners.indices {
            guard let listener = listeners[slot], listener.server === server else { continue }
            if !listener.paused { _ = toby_loop_remove(cLoop, server.listenFD) }
            listeners[slot] = nil
        }
    }

    /// Closes every connection `server` accepted on this loop.
    /// Resets every connection of `server` on this loop.
    func abortConnections(of server: ServerCore) {
        for case let connection? in slots where connection.server === server {
            connection.abort()
        }
        flushDirty()
    }

    /// Stops delivering to every connection of `server` on this loop: each
    /// sends what its owner queued, ends its stream and lingers; whatever
    /// is left after the server's linger is reset.
    func quiesceConnections(of server: ServerCore) {
        let resetAt = now &+ server.options.shutdownLinger.clampedNanoseconds
        for case let connection? in slots where connection.server === server {
            connection.quiesce(resetAt: resetAt)
        }
        flushDirty()
    }

    private func acceptConnections(_ listener: ListenerRegistration) {
        let server = listener.server
        var peer = [CChar](repeating: 0, count: 128)
        for _ in 0..<EventLoop.acceptsPerEvent {
            var fd: Int32 = -1
            let rc = peer.withUnsafeMutableBufferPointer {
                toby_socket_accept_nonblocking(server.listenFD, &fd, $0.baseAddress, $0.count)
            }
            if rc == 0 {
                listener.backoff = 0
                let text = peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                adopt(fd: fd, peer: server.describePeer(text), server: server)
                continue
            }
            if rc == -EAGAIN { return }
            let error = TobyError.fromCode(Int(rc), operation: "accept")
            server.noteAcceptFailure(error)
            if rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM {
                // Out of descriptors or memory: the connection stays in the
                // backlog. Stop watching the listener for a while (10 ms,
                // doubling to 1 s) instead of spinning on it; connections
                // already open go on being served, and accepting resumes by
                // itself once descriptors are free again.
                listener.backoff = listener.backoff == 0 ? 10_000_000 : min(listener.backoff * 2, 1_000_000_000)
                listener.paused = true
                _ = toby_loop_remove(cLoop, server.listenFD)
                timers.push(deadline: now + listener.backoff, token: listener.token)
            }
            // Other errors (EPERM from a firewall, EPROTO...) belong to that
            // one connection: try the next one on the next event.
            return
        }
    }

    private func resumeAccepting(_ listener: ListenerRegistration) {
        guard listener.paused else { return }
        let rc = toby_loop_add(
            cLoop, listener.server.listenFD, listener.token,
            UInt32(TOBY_LOOP_READ | TOBY_LOOP_EXCLUSIVE))
        if rc == 0 || rc == -EEXIST {
            listener.paused = false
        } else {
            timers.push(deadline: now + max(listener.backoff, 10_000_000), token: listener.token)
        }
    }

    // MARK: Shutdown

    private func shutDownEverything() {
        for token in Array(writableWaits.keys) { endWritableWait(token, error: TobyError.closed) }
        for slot in listeners.indices {
            if let listener = listeners[slot] {
                removeListener(listener.server)
            }
        }
        for case let connection? in slots {
            connection.shutDown()
        }
        flushDirty()
        lock.lock()
        let leftovers = inbox
        inbox.removeAll()
        lock.unlock()
        for job in leftovers {
            switch job {
            case .connection(let connection): connection.refuseForeignWork()
            case .job(let job): EventLoop.runElsewhere(job)
            case .run, .stop: break
            }
        }
    }
}

extension EventLoop: TaskExecutor {
    /// Runs a task's job on this loop's thread: a task that prefers this
    /// executor (the task a server starts for a connection) runs where its
    /// connection's I/O happens, and is resumed by it without a thread hop.
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !enqueue(.job(job)) {
            // The loop has stopped: the task must still run, elsewhere.
            EventLoop.runElsewhere(job)
        }
    }

    /// Runs a job on the global concurrent executor (a stopped loop's jobs).
    static func runElsewhere(_ job: UnownedJob) {
        globalConcurrentExecutor.enqueue(job)
    }
}

private final class LoopThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts the detached thread of a loop. A failure (EAGAIN: the process
/// is out of threads or memory) is an error for the caller, never a trap.
private func startThread(_ body: @escaping @Sendable () -> Void) throws(TobyError) {
    let context = Unmanaged.passRetained(LoopThreadBody(body)).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, &attributes,
        { raw in
            guard let raw else { return nil }
            Unmanaged<LoopThreadBody>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, context)
    if rc != 0 {
        Unmanaged<LoopThreadBody>.fromOpaque(context).release()
        throw .system(operation: "pthread_create", errno: rc)
    }
}
