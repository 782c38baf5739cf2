#if os(Linux)
import CTobyFrame
import Glibc

/// Tells async receivers when their socket becomes readable.
///
/// One epoll instance and one thread of its own serve the whole process.
/// An async receiver first reads without blocking; only when the socket is
/// empty does it park a continuation here (`EPOLLONESHOT`, re-armed per
/// wait), so a consumer that keeps up never pays a thread hand-off, and no
/// thread of Swift's cooperative pool ever blocks on a socket.
///
/// The poller is made by the first async wait that needs it, never by a
/// socket's deinit, so blocking-only programs never pay its two descriptors
/// and thread. If it cannot be made (no descriptors, no thread), that wait
/// throws and the next one tries again.
final class ReadinessPoller: @unchecked Sendable {
    private static let creationLock = ConditionLock()
    nonisolated(unsafe) private static var instance: ReadinessPoller?  // guarded by creationLock

    private struct Waiter {
        let continuation: CheckedContinuation<Void, Never>
        let deadline: UInt64?
    }

    private let epollFD: Int32
    private let wakeFD: Int32  // eventfd: makes epoll_wait recompute its timeout
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var waiters: [Int32: Waiter] = [:]
    private var registered: Set<Int32> = []
    private var timedWaiters = 0

    private init(epollFD: Int32, wakeFD: Int32) {
        self.epollFD = epollFD
        self.wakeFD = wakeFD
    }

    /// Only a poller that could not start its thread ever goes away.
    deinit {
        _ = Glibc.close(wakeFD)
        _ = Glibc.close(epollFD)
    }

    /// The process's poller, made on first use.
    ///
    /// - Throws: ``TobyError/system(operation:errno:)`` when the epoll
    ///   instance, its eventfd or its thread cannot be had (for example
    ///   `EMFILE`); a later call tries again.
    static func shared() throws(TobyError) -> ReadinessPoller {
        try creationLock.withLock { () throws(TobyError) -> ReadinessPoller in
            if let instance { return instance }
            let poller = try make()
            instance = poller
            return poller
        }
    }

    /// A new poller with its thread running (the thread keeps it alive).
    static func make() throws(TobyError) -> ReadinessPoller {
        var epollFD: Int32 = -1
        var wakeFD: Int32 = -1
        let rc = toby_poller_create(&epollFD, &wakeFD)
        if rc != 0 { throw .system(operation: "epoll_create1/eventfd", errno: -rc) }
        let poller = ReadinessPoller(epollFD: epollFD, wakeFD: wakeFD)
        try spawnDetachedThread { poller.run() }  // on failure the deinit closes both fds
        return poller
    }

    /// Suspends until `fd` is readable (or has hung up), `deadline`
    /// (monotonic nanoseconds) has passed, or the task is cancelled. The
    /// caller finds out which by reading again.
    ///
    /// - Throws: As ``shared()``.
    static func waitReadable(_ fd: Int32, deadline: UInt64? = nil) async throws(TobyError) {
        let poller = try shared()
        await poller.wait(fd, deadline: deadline)
    }

    /// The poller if one was made; for tests.
    static var existingForTesting: ReadinessPoller? {
        creationLock.withLock { instance }
    }

    /// Drops `fd` before it is closed, if a poller exists. A socket is only
    /// forgotten by its deinit, so no wait on it can be pending.
    static func forget(_ fd: Int32) {
        let poller = creationLock.withLock { instance }
        poller?.remove(fd)
    }

    private func wait(_ fd: Int32, deadline: UInt64?) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.lock()
                if Task.isCancelled {
                    lock.unlock()
                    continuation.resume()
                    return
                }
                waiters[fd] = Waiter(continuation: continuation, deadline: deadline)
                if deadline != nil { timedWaiters += 1 }
                let wasRegistered = registered.contains(fd)
                registered.insert(fd)
                if toby_poller_arm(epollFD, fd, wasRegistered ? 1 : 0) != 0 {
                    // The caller reads again, and that read reports the real error.
                    let waiter = take(fd)
                    lock.unlock()
                    waiter?.continuation.resume()
                    return
                }
                lock.unlock()
                if deadline != nil { _ = toby_poller_wake(wakeFD) }
            }
        } onCancel: {
            lock.lock()
            let waiter = take(fd)
            lock.unlock()
            waiter?.continuation.resume()
        }
    }

    /// Removes and returns the waiter for `fd`; the lock must be held.
    private func take(_ fd: Int32) -> Waiter? {
        guard let waiter = waiters.removeValue(forKey: fd) else { return nil }
        if waiter.deadline != nil { timedWaiters -= 1 }
        return waiter
    }

    private func remove(_ fd: Int32) {
        lock.withLock {
            if registered.remove(fd) != nil {
                _ = toby_poller_disarm(epollFD, fd)
            }
        }
    }

    /// With the lock held: the epoll_wait timeout for the nearest deadline.
    private func timeoutMilliseconds(now: UInt64) -> Int32 {
        guard timedWaiters > 0 else { return -1 }
        var nearest = UInt64.max
        for waiter in waiters.values {
            if let deadline = waiter.deadline, deadline < nearest { nearest = deadline }
        }
        if nearest <= now { return 0 }
        return Int32(clamping: (nearest - now + 999_999) / 1_000_000)
    }

    private func run() {
        let capacity = 64
        let fds = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        var ready: [Waiter] = []
        while true {
            let timeout = lock.withLock { timeoutMilliseconds(now: monotonicNanoseconds()) }
            let n = toby_poller_wait(epollFD, wakeFD, fds, Int32(capacity), timeout)
            precondition(n >= 0, "epoll_wait failed: \(String(cString: toby_strerror(n)))")
            lock.lock()
            for i in 0..<Int(n) {
                if let waiter = take(fds[i]) { ready.append(waiter) }
            }
            if timedWaiters > 0 {
                let now = monotonicNanoseconds()
                for (fd, waiter) in waiters where waiter.deadline.map({ $0 <= now }) ?? false {
                    if let expired = take(fd) { ready.append(expired) }
                }
            }
            lock.unlock()
            for waiter in ready { waiter.continuation.resume() }
            ready.removeAll(keepingCapacity: true)
        }
    }
}
#endif
