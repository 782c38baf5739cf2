#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex (the benchmarks avoid Foundation).
final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Counts down to zero; `wait` blocks until then or until a deadline.
final class Latch: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var count: Int

    init(_ count: Int) {
        self.count = count
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func countDown() {
        pthread_mutex_lock(mutex)
        count -= 1
        if count <= 0 { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// True once the count reached zero, false if `seconds` passed first.
    @discardableResult
    func wait(seconds: Double) -> Bool {
        let deadline = nowNanoseconds() + UInt64(seconds * 1e9)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while count > 0 {
            if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT { return count <= 0 }
        }
        return true
    }
}

/// A mutable value shared between threads; callers order their accesses
/// (a latch or a join gives the happens-before edge).
final class Box<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Collects the first error thrown by any worker.
final class Failures: @unchecked Sendable {
    private let lock = Lock()
    private var first: Error?

    func record(_ error: Error) { lock.withLock { if first == nil { first = error } } }
    func check() throws { if let error = lock.withLock({ first }) { throw error } }
    var hasFailed: Bool { lock.withLock { first != nil } }
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// A joinable pthread running `body`.
final class Worker: @unchecked Sendable {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 1 << 20)
        let rc = pthread_create(&thread, &attr, { raw in
            let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, context)
        pthread_attr_destroy(&attr)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    func join() { pthread_join(thread, nil) }
}

/// Runs the `timed` bodies on threads of their own, released together after
/// `background` threads (servers) were started. Returns the nanoseconds from
/// the release until the last timed body returned. Throws the first error of
/// any body, or `BenchError.timeout`.
func runThreads(
    timed: [@Sendable () throws -> Void],
    background: [@Sendable () throws -> Void] = [],
    timeout: Double
) throws -> UInt64 {
    let failures = Failures()
    let gate = Latch(1)
    let finished = Latch(timed.count)
    let backgroundDone = Latch(background.count)
    let lastEnd = Box<UInt64>(0)
    let endLock = Lock()
    var workers: [Worker] = []
    for body in background {
        workers.append(Worker {
            do { try body() } catch { failures.record(error) }
            backgroundDone.countDown()
        })
    }
    for body in timed {
        workers.append(Worker {
            gate.wait(seconds: 3600)
            do { try body() } catch { failures.record(error) }
            let end = nowNanoseconds()
            endLock.withLock { lastEnd.value = max(lastEnd.value, end) }
            finished.countDown()
        })
    }
    let start = nowNanoseconds()
    gate.countDown()
    // Waits in slices so that a failed body (say, an integrity check)
    // is reported at once rather than as a timeout of its stuck peer.
    let deadline = start + UInt64(timeout * 1e9)
    while !finished.wait(seconds: 0.25) {
        try failures.check()
        if nowNanoseconds() > deadline {
            throw BenchError.timeout("timed threads still running after \(Int(timeout)) s")
        }
    }
    try failures.check()
    guard backgroundDone.wait(seconds: timeout) else {
        throw BenchError.timeout("server threads still running after \(Int(timeout)) s")
    }
    for worker in workers { worker.join() }
    try failures.check()
    return endLock.withLock { lastEnd.value } - start
}
