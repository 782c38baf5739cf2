import Histogram
import Synchronization
import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// The clock of one run, shared by every connection: replies that arrive in
/// `[start, end)` are counted, and no message is sent after `end`.
struct BenchWindow: Sendable {
    let start: UInt64
    let end: UInt64
}

/// One connection's figures, kept by the code that receives its replies.
struct BenchFigures: Sendable {
    /// Replies (pipeline, ping-pong) or messages sent (one-way) inside the window.
    var measured = 0
    /// Round trips inside the window, in nanoseconds.
    var latency = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)

    /// Checks the reply to message `k` (sent at `sentAt`); nil if it is
    /// right, then counted and timed if it falls in the window.
    @inline(__always)
    mutating func reply(
        _ bytes: UnsafeRawBufferPointer, message k: Int, sentAt: UInt64, payloads: BenchPayloads, window: BenchWindow
    ) -> String? {
        let now = monotonicNanoseconds()
        if let problem = payloads.mismatch(bytes, message: k) { return problem }
        if sentAt >= window.start && now < window.end {
            measured += 1
            latency.record(max(1, now &- sentAt))
        }
        return nil
    }
}

/// What `toby bench` reads from a connection, whatever drives it.
protocol BenchLoad: AnyObject, Sendable {
    /// The server's address.
    var peer: String { get }
    /// Replies received so far (relaxed: for progress and the watchdog).
    var repliesSoFar: Int { get }
    /// Messages accepted for sending so far.
    var sentSoFar: Int { get }
    /// The last message was sent.
    var isSendingDone: Bool { get }
    /// Read once the run counted the connection's work finished.
    var figures: BenchFigures { get }
}

/// What the threads of a run share besides their connection: the first
/// failure (it ends the run: the tool reports it and exits with status 1,
/// without waiting for threads a broken server may keep blocked) and how
/// many threads have finished.
final class BenchRun: Sendable {
    private let first = ConditionLock()
    nonisolated(unsafe) private var firstFailure: String?  // guarded by first
    private let raised = Atomic<Bool>(false)
    private let done = Atomic<Int>(0)

    var failure: String? { first.withLock { firstFailure } }
    var failed: Bool { raised.load(ordering: .relaxed) }
    /// Threads that have returned. Acquiring: what they wrote before is
    /// visible once they are counted.
    var finishedThreads: Int { done.load(ordering: .acquiring) }

    func fail(_ message: String) {
        first.withLock { if firstFailure == nil { firstFailure = message } }
        raised.store(true, ordering: .relaxed)
    }

    func threadFinished() { done.add(1, ordering: .releasing) }
}

/// One connection of `toby bench` and the threads that drive it.
///
/// Pipeline and one-way use two threads, one sending and one receiving, so
/// that a window larger than the socket buffers can never deadlock (the
/// server blocked writing replies we are not reading while we are blocked
/// writing messages it is not reading); ping-pong uses one. Every reply of
/// the pipeline and ping-pong modes is checked against the message it
/// answers. The run ends with ``TobyMessenger/close()`` after the last
/// message: the replies still owed arrive, then the server's end of stream,
/// which proves that nothing more was coming.
final class BenchConnection: BenchLoad, @unchecked Sendable {
    let index: Int
    let messenger: TobyMessenger
    let receiver: TobyReceiver
    let payloads: BenchPayloads
    let window: BenchWindow
    let run: BenchRun
    /// Messages kept unanswered (pipeline).
    let inFlight: Int
    /// The sender refills the window once this many slots are free: one
    /// wake-up and one write per half window, not per reply.
    let refill: Int

    /// Replies received so far (all of them, for the progress line).
    let replies = Atomic<Int>(0)
    /// Messages accepted by the messenger so far.
    let sent = Atomic<Int>(0)
    /// The sender has sent its last message.
    let sendingDone = Atomic<Bool>(false)
    /// What was measured; read once the threads are counted finished.
    private(set) var figures = BenchFigures()

    /// Free slots of the window: the sender takes one per message, the
    /// receiver gives one back per reply.
    private let credits: Credits
    /// When message `k` was sent, at `k % inFlight`. The sender writes a slot
    /// before the message is written to the socket; the receiver reads it
    /// after the reply arrived, and the slot is written again only after a
    /// credit the receiver gave back once it had read it.
    private let sendTimes: UnsafeMutablePointer<UInt64>

    init(
        index: Int, messenger: TobyMessenger, payloads: BenchPayloads, window: BenchWindow, inFlight: Int,
        run: BenchRun
    ) throws(TobyError) {
        self.index = index
        self.messenger = messenger
        self.receiver = try messenger.start()
        self.payloads = payloads
        self.window = window
        self.inFlight = inFlight
        self.run = run
        refill = max(1, inFlight / 2)
        credits = Credits(inFlight, wakeAt: refill)
        sendTimes = .allocate(capacity: inFlight)
        sendTimes.initialize(repeating: 0, count: inFlight)
    }

    deinit { sendTimes.deallocate() }

    var peer: String { messenger.peer }
    var repliesSoFar: Int { replies.load(ordering: .relaxed) }
    var sentSoFar: Int { sent.load(ordering: .relaxed) }
    var isSendingDone: Bool { sendingDone.load(ordering: .relaxed) }

    /// Starts the connection's threads; returns how many the run waits
    /// for. Read the figures once ``BenchRun/finishedThreads`` has counted
    /// them all. A one-way run waits for its senders only: what a server
    /// sends back is read for as long as the process runs, and a server that
    /// keeps its side open after our end is no failure.
    func start(_ mode: BenchMode) throws(TobyError) -> Int {
        let awaited: [@Sendable () -> Void]
        switch mode {
        case .pipeline: awaited = [sendPipelined, receiveChecked]
        case .pingPong: awaited = [pingPong]
        case .oneWay:
            awaited = [sendOneWay]
            try Threads.spawn(stackSize: connectionStack) { self.drain() }
        }
        for body in awaited {
            try Threads.spawn(stackSize: connectionStack) { [run] in
                body()
                run.threadFinished()
            }
        }
        return awaited.count
    }

    private var stopping: Bool { run.failed || monotonicNanoseconds() >= window.end }

    private func fail(_ what: String) {
        run.fail("connection \(index + 1) (\(messenger.peer)): \(what)")
    }

    // MARK: pipeline

    /// Sends whenever the window has room: as many messages as it has room
    /// for in one `send(contentsOf:)`, so a client is not one syscall per
    /// message (as redis-benchmark writes its whole pipeline at once).
    private func sendPipelined() {
        var k = 0
        var batch: [[UInt8]] = []
        batch.reserveCapacity(inFlight)
        while true {
            let room = credits.takeAll(atLeast: refill)
            let now = monotonicNanoseconds()
            if now >= window.end || run.failed { break }
            batch.removeAll(keepingCapacity: true)
            for i in k..<(k + room) {
                sendTimes[i % inFlight] = now
                batch.append(payloads.message(i))
            }
            do {
                if room == 1 { try messenger.send(batch[0]) } else { try messenger.send(contentsOf: batch) }
            } catch {
                if !run.failed { fail("sending failed after \(k) messages: \(error)") }
                return
            }
            k += room
            sent.store(k, ordering: .relaxed)
        }
        finishSending(after: k)
    }

    /// Checks every reply, in order, and records its round trip. Slots go
    /// back to the sender a refill's worth at a time (it would not wake for
    /// fewer), so a reply costs no lock round trip.
    private func receiveChecked() {
        var k = 0
        var owed = 0
        do {
            while true {
                let mismatch = try receiver.receive { reply -> String? in
                    figures.reply(reply, message: k, sentAt: sendTimes[k % inFlight], payloads: payloads, window: window)
                }
                guard let mismatch else { break }  // the server's end of stream
                if let problem = mismatch {
                    fail("message \(k + 1): \(problem)")
                    return
                }
                k += 1
                replies.store(k, ordering: .relaxed)
                owed += 1
                if owed == refill {
                    credits.give(owed)
                    owed = 0
                }
            }
        } catch {
            if !run.failed { fail("after \(k) replies: \(error)") }
            return
        }
        checkEnd(replies: k)
    }

    // MARK: ping-pong

    private func pingPong() {
        var k = 0
        do {
            while !stopping {
                let sentAt = monotonicNanoseconds()
                try messenger.send(payloads.message(k))
                sent.store(k + 1, ordering: .relaxed)
                let mismatch = try receiver.receive { reply -> String? in
                    figures.reply(reply, message: k, sentAt: sentAt, payloads: payloads, window: window)
                }
                guard let mismatch else {
                    fail("the server ended the connection after \(k) of \(k + 1) replies")
                    return
                }
                if let problem = mismatch {
                    fail("message \(k + 1): \(problem)")
                    return
                }
                k += 1
                replies.store(k, ordering: .relaxed)
            }
            try messenger.close()
            // Nothing is owed; the server's end of stream confirms it.
            while let extra = try receiver.receive({ $0.count }) {
                fail("the server sent a message of \(extra) bytes that answers nothing")
                return
            }
        } catch {
            if !run.failed { fail("after \(k) replies: \(error)") }
        }
    }

    // MARK: one-way

    /// Sends continuously, 16 messages a call when they are small; counts
    /// the messages the messenger accepted inside the window.
    private func sendOneWay() {
        let perCall = payloads.size <= 4096 ? 16 : 1
        var k = 0
        var batch: [[UInt8]] = []
        batch.reserveCapacity(perCall)
        while !run.failed {
            let now = monotonicNanoseconds()
            if now >= window.end { break }
            batch.removeAll(keepingCapacity: true)
            for i in k..<(k + perCall) { batch.append(payloads.message(i)) }
            do {
                if perCall == 1 { try messenger.send(batch[0]) } else { try messenger.send(contentsOf: batch) }
            } catch {
                if !run.failed { fail("sending failed after \(k) messages: \(error)") }
                return
            }
            k += perCall
            sent.store(k, ordering: .relaxed)
            if now >= window.start { figures.measured += perCall }
        }
        finishSending(after: k)
    }

    /// Reads whatever the server sends back, unchecked, until its end.
    private func drain() {
        var count = 0
        do {
            while try receiver.receive({ _ in }) != nil {
                count += 1
                replies.store(count, ordering: .relaxed)
            }
        } catch {
            if !run.failed && !sendingDone.load(ordering: .relaxed) { fail("\(error)") }
        }
    }

    // MARK: the end

    /// Ends the stream once everything is sent: the server answers what it
    /// still owes and then ends its side.
    private func finishSending(after count: Int) {
        sent.store(count, ordering: .relaxed)
        sendingDone.store(true, ordering: .relaxed)
        if run.failed { return }
        do {
            try messenger.close()
        } catch {
            if !run.failed { fail("closing after \(count) messages: \(error)") }
        }
    }

    private func checkEnd(replies count: Int) {
        let total = sent.load(ordering: .relaxed)
        if count != total && !run.failed {
            fail("the server ended the connection after \(count) of \(total) replies")
        }
    }
}

/// The free slots of a pipeline window. The sender takes every free slot
/// at once (sleeping until there are `wakeAt`); the receiver gives them back
/// and wakes the sender only when it sleeps and enough are free.
final class Credits: @unchecked Sendable {
    private let lock = ConditionLock()
    private var available: Int  // guarded by lock
    private var sleeping = false  // guarded by lock

    private let wakeAt: Int

    /// `count` free slots; the sender sleeps until `wakeAt` are free.
    init(_ count: Int, wakeAt: Int) {
        available = count
        self.wakeAt = wakeAt
    }

    /// Waits for at least `least` free slots; takes them all and returns how many.
    func takeAll(atLeast least: Int) -> Int {
        lock.withLock {
            while available < least {
                sleeping = true
                lock.wait()
            }
            sleeping = false
            defer { available = 0 }
            return available
        }
    }

    func give(_ count: Int) {
        lock.withLock {
            available += count
            if sleeping && available >= wakeAt { lock.broadcast() }
        }
    }
}
