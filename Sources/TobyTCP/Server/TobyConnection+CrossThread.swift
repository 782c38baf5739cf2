import CTobyFrame
import Glibc

// Sends and closes from threads other than the connection's loop. They go
// through `foreign*` (guarded by `loop.lock`) and a job in the loop's inbox;
// the loop takes them into the output queue, in each thread's order.
extension TobyConnection {
    enum CloseKind { case graceful, discarding, abortive }

    func sendForeign(_ messages: [[UInt8]], bytes: Int) throws(TobyError) {
        let limit = configuration.maxQueuedSendBytes
        // A loop thread never blocks (it would stall every connection on it).
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

    func requestForeign(_ kind: CloseKind) {
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
        guard !machine.isClosed else {
            loop.lock.unlock()
            return
        }
        if output.pendingBytes >= machine.highWater && foreignClose != .abortive {
            loop.lock.unlock()
            foreignDeferred = true  // taken when the queue drains (flushOutput)
            return
        }
        let close = foreignClose
        foreignClose = nil
        let messages = takeForeignSendsLocked()
        loop.lock.unlock()
        if close == .abortive {
            perform(machine.finish(nil, abortive: true))
            return
        }
        if machine.state.acceptsSends {
            queue(messages)
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

    /// Closing: sends from other threads that were accepted (their `send`
    /// returned) go into the output queue now, whatever its size; later
    /// ones are refused.
    func absorbForeignSends() {
        loop.lock.lock()
        foreignOpen = false
        let messages = takeForeignSendsLocked()
        loop.lock.unlock()
        queue(messages)
    }

    /// With loop.lock held: takes the sends other threads queued and wakes
    /// the ones blocked for room.
    private func takeForeignSendsLocked() -> [[UInt8]] {
        let messages = foreign
        foreign.removeAll()
        foreignBytes = 0
        foreignDeferred = false
        if foreignWaiters > 0 { loop.lock.broadcast() }
        return messages
    }

    private func queue(_ messages: [[UInt8]]) {
        for message in messages { output.append(payload: message, order: order, pool: loop.outputPool) }
        countSent(messages.count)
    }

    /// The connection ended: later sends are refused, blocked senders wake.
    func closeForeign() {
        loop.lock.lock()
        foreignOpen = false
        foreign.removeAll()
        foreignBytes = 0
        foreignClose = nil
        loop.lock.broadcast()
        loop.lock.unlock()
    }
}
