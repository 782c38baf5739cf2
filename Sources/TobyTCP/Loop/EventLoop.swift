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
    let cLoop: UnsafeMutablePointer<toby_loop>
    let lock = ConditionLock()

    // Guarded by `lock`.
    private var inbox: [Job] = []
    private var stopped = false
    private var finished = false
    /// The epoll and eventfd descriptors are closed (the thread ended).
    private var descriptorsClosed = false

    // Loop thread only.
    var slots: [TobyConnection?] = []
    var generations: [UInt32] = []
    var freeSlots: [Int] = []
    var listeners: [ListenerRegistration?] = []
    var timers = TimerHeap()
    private let events: UnsafeMutablePointer<toby_loop_event>
    /// The writer every connection of this loop flushes through.
    let writer = WriterScratch()
    private(set) var now: UInt64 = monotonicNanoseconds()
    var dirty: [TobyConnection] = []
    var rings: [Int: BufferPool] = [:]
    let outputPool = BufferPool(size: 16 << 10, keep: 64)
    /// Room for one batch of lent messages (grown on demand).
    var batch: UnsafeMutablePointer<TobyMessage>
    var batchCapacity = 1024
    /// Where `toby_reader_take` describes the frames of a read.
    let spans: UnsafeMutablePointer<toby_span>
    static let spanCapacity = 1024
    /// Where a frame that wraps around a ring's end is made contiguous (at
    /// most one frame per batch can wrap).
    var scratch: UnsafeMutableRawPointer?
    var scratchCapacity = 0
    /// The array of the frame larger than the ring being delivered, so a
    /// handler forwarding it retains the array instead of copying it.
    var currentDirect: [UInt8]?
    /// Tasks waiting for a descriptor to become writable (connects).
    var writableWaits: [UInt64: (continuation: CheckedContinuation<Void, any Error>, timeout: Duration)] = [:]
    var nextWaitID: UInt64 = 0
    /// Live connections, for tests and statistics.
    var connectionCount = 0
    /// Each server's counters on this loop, by server id (loop only).
    var serverCounters: [Int: ServerCounters] = [:]

    private init(index: Int, loop: UnsafeMutablePointer<toby_loop>) {
        self.index = index
        self.cLoop = loop
        events = .allocate(capacity: EventLoop.eventCapacity)
        batch = .allocate(capacity: batchCapacity)
        spans = .allocate(capacity: EventLoop.spanCapacity)
    }

    deinit {
        if !descriptorsClosed { toby_loop_close(cLoop) }
        cLoop.deallocate()
        events.deallocate()
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
        try Threads.spawn { loop.run() }
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
    /// Whether the loop has stopped: jobs for it now run on the global
    /// executor, and every connection it served is closed.
    var hasStopped: Bool { lock.withLock { stopped } }

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
    func listener(for token: UInt64) -> ListenerRegistration? {
        let slot = Int(token & 0xffff_ffff)
        guard slot < listeners.count, let listener = listeners[slot], listener.token == token else { return nil }
        return listener
    }

    func connection(for token: UInt64) -> TobyConnection? {
        let slot = Int(token & 0xffff_ffff)
        guard slot < slots.count, UInt64(generations[slot]) == token >> 32 else { return nil }
        return slots[slot]
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
