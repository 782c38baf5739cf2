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
    let connection: TobyAsyncConnection
    private let credits: AsyncCredits

    init(
        index: Int, connection: TobyAsyncConnection, payloads: BenchPayloads, window: BenchWindow, inFlight: Int,
        run: BenchRun
    ) {
        self.connection = connection
        credits = AsyncCredits(inFlight)
        super.init(
            index: index, peer: connection.peer, payloads: payloads, window: window, inFlight: inFlight, run: run)
    }

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

    private func sendPipelined() async {
        var k = 0
        var batch: [[UInt8]] = []
        batch.reserveCapacity(inFlight)
        while true {
            let room = await credits.takeAll(atLeast: refill)
            let now = monotonicNanoseconds()
            if now >= window.end || run.failed { break }
            fillWindow(&batch, from: k, count: room, sentAt: now)
            do {
                try await connection.send(contentsOf: batch)
            } catch {
                failUnlessFailed("sending failed after \(k) messages: \(error)")
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
                    guard message.withUnsafeBytes({ checkReply($0, message: k) }) else { return }
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
            failUnlessFailed("after \(k) replies: \(error)")
            return
        }
        checkEnd(replies: k)
    }

    private func sendOneWay() async {
        let perCall = oneWayPerCall
        var k = 0
        var batch: [[UInt8]] = []
        while !run.failed {
            let now = monotonicNanoseconds()
            if now >= window.end { break }
            fillOneWay(&batch, from: k, count: perCall)
            do {
                try await connection.send(contentsOf: batch)
            } catch {
                failUnlessFailed("sending failed after \(k) messages: \(error)")
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
            if !isSendingDone { failUnlessFailed("\(error)") }
        }
    }

    private func finishSending(after count: Int) async {
        guard sendingEnded(after: count) else { return }
        do {
            try await connection.close()
        } catch {
            failUnlessFailed("closing after \(count) messages: \(error)")
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
