import CTobyFrame
import Glibc

// Non-blocking connects of the async client: a task waits on the loop for
// its descriptor to become writable, with a timeout from the timer heap.
extension EventLoop {
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

    func endWritableWait(_ token: UInt64, error: (any Error)?) {
        guard let wait = writableWaits.removeValue(forKey: token) else { return }
        if let error {
            wait.continuation.resume(throwing: error)
        } else {
            wait.continuation.resume()
        }
    }
}
