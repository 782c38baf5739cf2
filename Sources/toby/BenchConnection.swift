import TobyTCP

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
    let messenger: TobyMessenger
    let receiver: TobyReceiver

    /// Free slots of the window: the sender takes one per message, the
    /// receiver gives one back per reply.
    private let credits: Credits

    init(
        index: Int, messenger: TobyMessenger, payloads: BenchPayloads, window: BenchWindow, inFlight: Int,
        run: BenchRun
    ) throws(TobyError) {
        self.messenger = messenger
        self.receiver = try messenger.start()
        let refill = max(1, inFlight / 2)
        credits = Credits(inFlight, wakeAt: refill)
        super.init(
            index: index, peer: messenger.peer, payloads: payloads, window: window, inFlight: inFlight, run: run)
    }

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
            fillWindow(&batch, from: k, count: room, sentAt: now)
            do {
                if room == 1 { try messenger.send(batch[0]) } else { try messenger.send(contentsOf: batch) }
            } catch {
                failUnlessFailed("sending failed after \(k) messages: \(error)")
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
                guard let right = try receiver.receive({ checkReply($0, message: k) }) else { break }  // its end
                if !right { return }
                k += 1
                replies.store(k, ordering: .relaxed)
                owed += 1
                if owed == refill {
                    credits.give(owed)
                    owed = 0
                }
            }
        } catch {
            failUnlessFailed("after \(k) replies: \(error)")
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
            failUnlessFailed("after \(k) replies: \(error)")
        }
    }

    // MARK: one-way

    /// Sends continuously, 16 messages a call when they are small; counts
    /// the messages the messenger accepted inside the window.
    private func sendOneWay() {
        let perCall = oneWayPerCall
        var k = 0
        var batch: [[UInt8]] = []
        batch.reserveCapacity(perCall)
        while !run.failed {
            let now = monotonicNanoseconds()
            if now >= window.end { break }
            fillOneWay(&batch, from: k, count: perCall)
            do {
                if perCall == 1 { try messenger.send(batch[0]) } else { try messenger.send(contentsOf: batch) }
            } catch {
                failUnlessFailed("sending failed after \(k) messages: \(error)")
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
            if !isSendingDone { failUnlessFailed("\(error)") }
        }
    }

    // MARK: the end

    /// Ends the stream once everything is sent: the server answers what it
    /// still owes and then ends its side.
    private func finishSending(after count: Int) {
        guard sendingEnded(after: count) else { return }
        do {
            try messenger.close()
        } catch {
            failUnlessFailed("closing after \(count) messages: \(error)")
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
