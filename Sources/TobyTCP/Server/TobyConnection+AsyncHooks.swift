import CTobyFrame
import Glibc

// Hooks for the async API (loop thread only): tasks that wait for room in
// the output queue, and a consumer that holds reading while it catches up.
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
    var outputIsFull: Bool { output.pendingBytes >= machine.highWater }

    /// Whether the connection still accepts sends.
    var acceptsSends: Bool { machine.state.acceptsSends }

    /// Whether the descriptor is closed.
    var isClosed: Bool { machine.isClosed }

    /// Payload bytes allocated for, and read of, the large frame being read
    /// (loop only; tests).
    var largeFrameForTesting: (allocated: Int, filled: Int) { (large.allocated, large.filled) }

    /// Queues an owned message on the loop (the async API's send).
    func enqueueOnLoop(_ message: [UInt8]) throws(TobyError) {
        loop.assertOnLoop()
        try checkLength(message.count)
        guard machine.state.acceptsSends else { throw machine.sendError }
        output.append(payload: message, order: order, pool: loop.outputPool)
        countSent(1)
        markDirty()
    }

    /// Queues already framed bytes in this connection's byte order.
    func enqueueFramedOnLoop(_ frames: [UInt8], count: Int) throws(TobyError) {
        loop.assertOnLoop()
        guard machine.state.acceptsSends else { throw machine.sendError }
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
        if kind == .room && output.pendingBytes < machine.highWater { return }
        if kind == .drained && output.isEmpty && !isDirty { return }
        if machine.isClosed { throw machine.sendError }
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
    func resumeOutputWaiters() {
        guard !outputWaiters.isEmpty else { return }
        let pending = output.pendingBytes
        var index = 0
        while index < outputWaiters.count {
            let waiter = outputWaiters[index]
            let ready = waiter.kind == .room ? pending <= machine.lowWater : pending == 0
            if ready {
                outputWaiters.remove(at: index).continuation.resume()
            } else {
                index += 1
            }
        }
    }

    func expireOutputWaiters() {
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

    func failOutputWaiters(_ error: TobyError, unsent: Int) {
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
        guard onLoopOrStopped() else { return }
        perform(machine.holdInbound())
    }

    /// Reads again once the consumer caught up; frames already in the ring
    /// are delivered at once (no readiness event would report them).
    func releaseInbound() {
        guard onLoopOrStopped() else { return }
        perform(machine.releaseInbound())
    }

    /// True on the loop. Off it, the consumer task has outlived its loop
    /// (the group shut down, so its jobs run on the global executor): the
    /// connection is closed and there is no reading to hold or resume.
    /// Anything else is a bug, caught in debug builds.
    private func onLoopOrStopped() -> Bool {
        if loop.isCurrent { return true }
        assert(loop.hasStopped, "loop-only state touched off its loop")
        return false
    }

    /// Whether a full output queue pauses reading (see
    /// ``ConnectionStateMachine/pausesReadingForOutput``).
    var pausesReadingForOutput: Bool {
        get { machine.pausesReadingForOutput }
        set { machine.pausesReadingForOutput = newValue }
    }
}
