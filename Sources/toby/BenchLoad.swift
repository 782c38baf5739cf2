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

/// What both clients of `toby bench` keep per connection: the window,
/// the counters the progress line and the watchdog read, the send times,
/// the reply checks and the end of the run. ``BenchConnection`` drives it
/// with threads, ``BenchAsyncConnection`` with tasks on event loops.
class BenchLoad: @unchecked Sendable {
    let index: Int
    /// The server's address.
    let peer: String
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
    /// Messages accepted for sending so far.
    let sent = Atomic<Int>(0)
    /// The sender has sent its last message.
    let sendingDone = Atomic<Bool>(false)
    /// What was measured: written by the code that receives the replies
    /// (the sender, one-way) only; read once the run counted it finished.
    var figures = BenchFigures()
    /// When message `k` was sent, at `k % inFlight`. The sender writes a slot
    /// before the message is written to the socket; the receiver reads it
    /// after the reply arrived, and the slot is written again only after a
    /// credit the receiver gave back once it had read it.
    let sendTimes: UnsafeMutablePointer<UInt64>

    init(index: Int, peer: String, payloads: BenchPayloads, window: BenchWindow, inFlight: Int, run: BenchRun) {
        self.index = index
        self.peer = peer
        self.payloads = payloads
        self.window = window
        self.inFlight = inFlight
        self.run = run
        refill = max(1, inFlight / 2)
        sendTimes = .allocate(capacity: inFlight)
        sendTimes.initialize(repeating: 0, count: inFlight)
    }

    deinit { sendTimes.deallocate() }

    /// Replies received so far (relaxed: for progress and the watchdog).
    final var repliesSoFar: Int { replies.load(ordering: .relaxed) }
    final var sentSoFar: Int { sent.load(ordering: .relaxed) }
    final var isSendingDone: Bool { sendingDone.load(ordering: .relaxed) }

    /// Ends the run with a failure that names this connection.
    final func fail(_ what: String) {
        run.fail("connection \(index + 1) (\(peer)): \(what)")
    }

    /// As ``fail(_:)``, unless the run failed already (then this is its echo).
    final func failUnlessFailed(_ what: @autoclosure () -> String) {
        if !run.failed { fail(what()) }
    }

    /// Pipelined messages `k ..< k + count` into `batch`, stamped `now`.
    @inline(__always)
    final func fillWindow(_ batch: inout [[UInt8]], from k: Int, count: Int, sentAt now: UInt64) {
        batch.removeAll(keepingCapacity: true)
        for i in k..<(k + count) {
            sendTimes[i % inFlight] = now
            batch.append(payloads.message(i))
        }
    }

    /// One-way messages `k ..< k + count` into `batch` (not timed).
    @inline(__always)
    final func fillOneWay(_ batch: inout [[UInt8]], from k: Int, count: Int) {
        batch.removeAll(keepingCapacity: true)
        for i in k..<(k + count) { batch.append(payloads.message(i)) }
    }

    /// How many one-way messages a send call takes: 16 when they are small.
    final var oneWayPerCall: Int { payloads.size <= 4096 ? 16 : 1 }

    /// Checks the reply to pipelined message `k`, counting and timing it;
    /// false once it is wrong (the run then failed, naming the byte).
    @inline(__always)
    final func checkReply(_ bytes: UnsafeRawBufferPointer, message k: Int) -> Bool {
        let sentAt = sendTimes[k % inFlight]
        if let problem = figures.reply(bytes, message: k, sentAt: sentAt, payloads: payloads, window: window) {
            fail("message \(k + 1): \(problem)")
            return false
        }
        return true
    }

    /// Sending ended after `count` messages; returns whether to close the
    /// connection now (not if the run failed: the tool is about to exit).
    final func sendingEnded(after count: Int) -> Bool {
        sent.store(count, ordering: .relaxed)
        sendingDone.store(true, ordering: .relaxed)
        return !run.failed
    }

    /// The server ended the stream after `count` replies: all were owed?
    final func checkEnd(replies count: Int) {
        let total = sent.load(ordering: .relaxed)
        if count != total { failUnlessFailed("the server ended the connection after \(count) of \(total) replies") }
    }
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
