import Dispatch
import Synchronization
import TobyTCP

/// One connection of `toby bench --api async`: a ``TobyAsyncConnection`` on
/// the tool's event loops, driven by a sender and a receiver task that run
/// on its loop. A loop serves many connections with no thread of their own
/// and takes every reply a read brought in one batch, so the generator
/// costs less CPU per message than a thread pair per connection does, and
/// scales to thousands of connections. The window, the checks and the end
/// of the run are those of ``BenchConnection``.
final class BenchAsyncConnection: BenchLoad, @unchecked Sendable {
    let index: Int
    let connection: TobyAsyncConnection
    let payloads: BenchPayloads
    let window: BenchWindow
    let run: BenchRun
    let inFlight: Int
    let refill: Int

    private let replies = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)
    private let sendingDone = Atomic<Bool>(false)
    /// Written by the receiving task only; read once the run is over.
    private(set) var figures = BenchFigures()
    private let credits: AsyncCredits
    /// When message `k` was sent, at `k % inFlight` (as in ``BenchConnection``).
    private let sendTimes: UnsafeMutablePointer<UInt64>

    init(
        index: Int, connection: TobyAsyncConnection, payloads: BenchPayloads, window: BenchWindow, inFlight: Int,
        run: BenchRun
    ) {
        self.index = index
        self.connection = connection
        self.payloads = payloads
        self.window = window
        self.inFlight = inFlight
        self.run = run
        refill = max(1, inFlight / 2)
        credits = AsyncCredits(inFlight)
        sendTimes = .allocate(capacity: inFlight)
        sendTimes.initialize(repeating: 0, count: inFlight)
    }

    deinit { sendTimes.deallocate() }

    var peer: String { connection.peer }
    var repliesSoFar: Int { replies.load(ordering: .relaxed) }
    var sentSoFar: Int { sent.load(ordering: .relaxed) }
    var isSendingDone: Bool { sendingDone.load(ordering: .relaxed) }

    /// Connects, blocking the calling thread (the tool's main thread, never
    /// one of Swift's pool) until the connect is done.
    static func connect(
        _ endpoint: EndpointOptions, configuration: TobyConfiguration, group: TobyEventLoopGroup
    ) throws -> TobyAsyncConnection {
        final class Outcome: @unchecked Sendable {
            var result: Result<TobyAsyncConnection, any Error>?  // written before `done` is signalled
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                if let unixPath = endpoint.unixPath {
                    outcome.result = .success(
                        try await TobyAsyncConnection.connect(
                            unixPath: unixPath, configuration: configuration, group: group))
                } else {
                    outcome.result = .success(
                        try await TobyAsyncConnection.connect(
                            host: endpoint.host ?? "127.0.0.1", port: endpoint.port ?? 0, configuration: configuration,
                            group: group))
                }
            } catch {
                outcome.result = .failure(error)
            }
            done.signal()
        }
        done.wait()
        guard let result = outcome.result else { throw ToolError("the connect ended without a result") }
        return try result.get()
    }

    /// Starts the connection's tasks; returns how many the run waits for
    /// (as ``BenchConnection/start(_:)``; ping-pong is the blocking client's).
    func start(_ mode: BenchMode) -> Int {
        let awaited: [@Sendable () async -> Void]
        switch mode {
        case .pipeline, .pingPong: awaited = [sendPipelined, receiveChecked]
        case .oneWay:
            awaited = [sendOneWay]
            Task(executorPreference: connection.executor) { await self.drain() }
        }
        for body in awaited {
            Task(executorPreference: connection.executor) { [run] in
                await body()
                run.threadFinished()
            }
        }
        return awaited.count
    }

    private func fail(_ what: String) {
        run.fail("connection \(index + 1) (\(peer)): \(what)")
    }

    private func sendPipelined() async {
        var k = 0
        var batch: [[UInt8]] = []
        batch.reserveCapacity(inFlight)
        while true {
            let room = await credits.takeAll(atLeast: refill)
            let now = monotonicNanoseconds()
            if now >= window.end || run.failed { break }
            batch.removeAll(keepingCapacity: true)
            for i in k..<(k + room) {
                sendTimes[i % inFlight] = now
                batch.append(payloads.message(i))
            }
            do {
                try await connection.send(contentsOf: batch)
            } catch {
                if !run.failed { fail("sending failed after \(k) messages: \(error)") }
                return
            }
            k += room
            sent.store(k, ordering: .relaxed)
        }
        await finishSending(after: k)
    }

    /// Every reply a read brought, as one batch, checked in order.
    private func receiveChecked() async {
        var k = 0
        var owed = 0
        do {
            for try await batch in connection.batches {
                for message in batch {
                    let problem = message.withUnsafeBytes { bytes in
                        figures.reply(
                            bytes, message: k, sentAt: sendTimes[k % inFlight], payloads: payloads, window: window)
                    }
                    if let problem {
                        fail("message \(k + 1): \(problem)")
                        return
                    }
                    k += 1
                    owed += 1
                    if owed == refill {
                        credits.give(owed)
                        owed = 0
                    }
                }
                replies.store(k, ordering: .relaxed)
            }
        } catch {
            if !run.failed { fail("after \(k) replies: \(error)") }
            return
        }
        let total = sent.load(ordering: .relaxed)
        if k != total && !run.failed { fail("the server ended the connection after \(k) of \(total) replies") }
    }

    private func sendOneWay() async {
        let perCall = payloads.size <= 4096 ? 16 : 1
        var k = 0
        var batch: [[UInt8]] = []
        while !run.failed {
            let now = monotonicNanoseconds()
            if now >= window.end { break }
            batch.removeAll(keepingCapacity: true)
            for i in k..<(k + perCall) { batch.append(payloads.message(i)) }
            do {
                try await connection.send(contentsOf: batch)
            } catch {
                if !run.failed { fail("sending failed after \(k) messages: \(error)") }
                return
            }
            k += perCall
            sent.store(k, ordering: .relaxed)
            if now >= window.start { figures.measured += perCall }
        }
        await finishSending(after: k)
    }

    private func drain() async {
        var count = 0
        do {
            for try await batch in connection.batches {
                count += batch.count
                replies.store(count, ordering: .relaxed)
            }
        } catch {
            if !run.failed && !sendingDone.load(ordering: .relaxed) { fail("\(error)") }
        }
    }

    private func finishSending(after count: Int) async {
        sent.store(count, ordering: .relaxed)
        sendingDone.store(true, ordering: .relaxed)
        if run.failed { return }
        do {
            try await connection.close()
        } catch {
            if !run.failed { fail("closing after \(count) messages: \(error)") }
        }
    }
}

/// ``Credits`` for tasks: the sender suspends instead of sleeping.
final class AsyncCredits: @unchecked Sendable {
    private let lock = ConditionLock()
    private var available: Int  // guarded by lock
    private var waiting: (least: Int, continuation: CheckedContinuation<Int, Never>)?  // guarded by lock

    init(_ count: Int) { available = count }

    /// Suspends until at least `least` slots are free; takes them all.
    func takeAll(atLeast least: Int) async -> Int {
        lock.lock()
        if available >= least {
            defer {
                available = 0
                lock.unlock()
            }
            return available
        }
        return await withCheckedContinuation { continuation in
            waiting = (least, continuation)
            lock.unlock()
        }
    }

    func give(_ count: Int) {
        lock.lock()
        available += count
        guard let waiter = waiting, available >= waiter.least else {
            lock.unlock()
            return
        }
        waiting = nil
        let taken = available
        available = 0
        lock.unlock()
        waiter.continuation.resume(returning: taken)
    }
}
