import CTobyFrame
import Glibc

// The loop's side of a connection: readiness events, timers, closing and
// shutting down. Each event asks `machine` what to do and performs the
// step it returns (`perform(_:)`); nothing here decides a transition.
extension TobyConnection {
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
        if events & UInt32(TOBY_LOOP_WRITE) != 0 && !machine.isClosed {
            flushOutput()
        }
        guard !machine.isClosed else { return }
        if machine.discardsInput {
            if events & (UInt32(TOBY_LOOP_READ) | hangup) != 0 { discardInput() }
        } else if machine.delivers {
            if events & (UInt32(TOBY_LOOP_READ) | hangup) != 0 { readAndDeliver() }
        } else if events & hangup != 0 {
            // A hang-up or error while we are not reading (paused, draining,
            // waiting for the owner): level-triggered, it would be reported
            // again at once, so settle it now. A write says what happened;
            // if nothing is queued, the socket is simply gone.
            flushOutput()
            if !machine.isClosed && output.isEmpty {
                perform(machine.finish(machine.failure ?? socketError()))
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
        guard !machine.isClosed else { return }
        expireOutputWaiters()
        guard !machine.isClosed else { return }
        let now = loop.now
        let fd = self.fd
        if now >= resetDeadline {
            perform(machine.resetDeadlinePassed { unacknowledgedBytes(fd) })
            return
        }
        guard deadline != .max, deadline <= now else {
            // None, or moved later since this heap entry was pushed.
            armTimer()
            return
        }
        deadline = .max
        perform(machine.deadlinePassed(readTimeout: configuration.readTimeout) { unacknowledgedBytes(fd) })
    }

    // MARK: Closing and shutting down

    /// Starts the owner's close: everything accepted goes out, then our
    /// side ends. `discardInput`: deliver nothing more and linger (the owner
    /// will not read again: an async task that ended); otherwise go on
    /// delivering until the peer ends too.
    func closeOnLoop(discardInput: Bool = false) {
        loop.assertOnLoop()
        perform(machine.close(discardingInput: discardInput))
    }

    /// On the loop, when the server's grace period is over: stop delivering
    /// messages, let the owner send what it owes and close (the handler's
    /// ``TobyServerHandler/shouldQuiesce(on:)``; an async task sees the end of
    /// its inbound and returns), then half-close and linger. Whatever is
    /// still open at `resetAt` (monotonic ns) is reset.
    func quiesce(resetAt: UInt64) {
        loop.assertOnLoop()
        guard !machine.isClosed else { return }
        resetDeadline = min(resetDeadline, resetAt)
        armTimer()
        perform(machine.quiesce())
    }

    /// On the loop, as it stops: write what the socket takes now, then close.
    func shutDown() {
        loop.assertOnLoop()
        if !machine.isClosed && !output.isEmpty {
            _ = output.flush(fd: fd, scratch: loop.writer, pool: loop.outputPool)
        }
        perform(machine.finish(nil))
    }

    // MARK: Output

    /// After a batch (or a job) queued output: write it, and turn what the
    /// socket did not take of lent ring bytes into owned copies.
    func flushAfterBatch() {
        loop.assertOnLoop()
        isDirty = false
        guard !machine.isClosed else { return }
        flushOutput()
        output.detachBorrowed()
    }

    func flushIfNeeded() {
        if isDirty { return }  // the loop flushes it
        if !output.isEmpty || machine.state != .open { flushOutput() }
    }

    /// Writes what the socket takes; the machine applies back-pressure and
    /// finishes closes once the queue is empty.
    func flushOutput() {
        guard !machine.isClosed else { return }
        if !output.isEmpty {
            let unsent = output.pendingBytes
            let result = output.flush(fd: fd, scratch: loop.writer, pool: loop.outputPool)
            countWritten(bytes: unsent - output.pendingBytes)
            switch result {
            case .drained:
                break
            case .wouldBlock:
                perform(machine.outputBlocked(pending: output.pendingBytes))
                if output.pendingBytes <= machine.lowWater { resumeOutputWaiters() }
                return
            case .failed(let code):
                perform(machine.finish(.system(operation: "sendmsg", errno: code)))
                return
            }
        }
        var step = machine.outputDrained()
        let deliverBuffered = step.actions.contains(.deliverBuffered)
        step.actions.remove(.deliverBuffered)
        perform(step)
        guard !machine.isClosed else { return }
        // Work from other threads arrives with a job of its own; only work
        // deferred by back-pressure needs taking here (no lock per flush).
        if foreignDeferred { takeForeignWork() }
        resumeOutputWaiters()
        if deliverBuffered && machine.delivers { readAndDeliver() }
    }

    func updateInterest() {
        guard !machine.isClosed else { return }
        var wanted: UInt32 = 0
        if machine.wantsInput { wanted |= UInt32(TOBY_LOOP_READ) }
        if !output.isEmpty { wanted |= UInt32(TOBY_LOOP_WRITE) }
        if wanted != interest {
            if loop.setInterest(self, wanted) == 0 { interest = wanted }
        }
    }

    // MARK: Performing steps

    /// Performs one step of the state machine, in the order its actions
    /// are declared; a handler callback may close the connection (a step
    /// of its own), so what follows one checks the state again.
    func perform(_ step: ConnectionStateMachine.Step) {
        let actions = step.actions
        if actions.contains(.shutdownRead) { _ = Glibc.shutdown(fd, Int32(SHUT_RD)) }
        if actions.contains(.shutdownWrite) { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }
        if actions.contains(.absorbForeignSends) { absorbForeignSends() }
        if actions.contains(.armLinger) {
            deadline = loop.now &+ TobyConnection.lingerNanoseconds
            armTimer()
        }
        if actions.contains(.startLingerChecks) {
            if resetDeadline == .max { resetDeadline = loop.now &+ shutdownLinger }
            lingerInterval = 1_000_000
            deadline = loop.now &+ lingerInterval
            armTimer()
        }
        if actions.contains(.rearmLingerCheck) {
            // Checks back off to every 100 ms.
            lingerInterval = min(lingerInterval * 2, 100_000_000)
            deadline = loop.now &+ lingerInterval
            armTimer()
        }
        if actions.contains(.armReadDeadline) { armReadDeadline() }
        if actions.contains(.countReadPause) { counters.figures.readPauses &+= 1 }
        if actions.contains(.countReadTimeout) { counters.figures.readTimeouts &+= 1 }
        if let finish = step.finish {
            end(finish)
            return
        }
        if actions.contains(.notifyInputEnded) { withHandler { $0.inputEnded(on: self) } }
        if actions.contains(.notifyQuiesce) { withHandler { $0.shouldQuiesce(on: self) } }
        if actions.contains(.updateInterest) { updateInterest() }
        if actions.contains(.flush) && !machine.isClosed { flushIfNeeded() }
        if actions.contains(.deliverBuffered) && machine.delivers { readAndDeliver() }
    }

    /// Closes the descriptor and tells the handler; the connection is over
    /// (the machine is already `closed`).
    private func end(_ finish: ConnectionStateMachine.Finish) {
        let error = finish.error
        counters.figures.connectionsClosed &+= 1
        server?.options.observer?.connectionClosed(observerEvent, error: error)
        switch error {
        case .frameTooLarge?: counters.figures.framesTooLarge &+= 1
        case .truncatedFrame?: counters.figures.framesTruncated &+= 1
        case .system(_, let code)? where code == ECONNRESET || code == EPIPE: counters.figures.resets &+= 1
        default: break
        }
        closeForeign()
        if finish.abortive {
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

    // MARK: Timers

    func armReadDeadline() {
        guard let timeout = configuration.readTimeout, machine.readDeadlineApplies else { return }
        deadline = loop.now &+ timeout.clampedNanoseconds
        armTimer()
    }

    /// Keeps one heap entry no later than the earliest deadline (the heap is
    /// lazy: a later deadline is checked when the entry surfaces).
    func armTimer() {
        var next = min(deadline, resetDeadline)
        for waiter in outputWaiters where waiter.deadline < next { next = waiter.deadline }
        guard next != .max, next < timerAt else { return }
        timerAt = next
        loop.schedule(deadline: next, token: token)
    }

    // MARK: The handler

    /// Runs a handler callback with the handler moved out of its property.
    @inline(__always)
    func withHandler(_ body: (inout any TobyServerHandler) -> Void) {
        guard var current = handler else { return }
        handler = nil
        inHandler = true
        body(&current)
        inHandler = false
        if let error = closedDuringHandler {
            closedDuringHandler = nil
            handler = current
            reportClosed(error)
        } else if !machine.isClosed {
            handler = current
        }
    }

    private func reportClosed(_ error: TobyError?) {
        var last = handler
        handler = nil  // it may hold this connection: break the cycle
        last?.connectionClosed(self, error: error)
    }
}
