import Glibc

/// A mutex with a condition variable, built on `pthread_mutex_t`: the one
/// lock of the package (library, tool and benchmarks).
///
/// Why not `Synchronization.Mutex`: ThreadSanitizer cannot see its futex and
/// reports false races, and this package must be clean under TSan. The
/// condition variable is needed anyway for blocking waits.
package final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    /// An unlocked mutex and its condition variable, on the monotonic clock.
    package init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        var mutexAttributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&mutexAttributes)
        #if canImport(Glibc)
        // Critical sections here are a few dozen instructions: spinning
        // briefly beats putting a contended thread to sleep in the kernel.
        pthread_mutexattr_settype(&mutexAttributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        #endif
        let rc1 = pthread_mutex_init(mutex, &mutexAttributes)
        pthread_mutexattr_destroy(&mutexAttributes)
        precondition(rc1 == 0, "pthread_mutex_init failed: \(rc1)")
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        #if !canImport(Darwin)
        // Deadlines are measured on the monotonic clock, immune to wall-clock jumps.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        #endif
        let rc2 = pthread_cond_init(condition, &attr)
        pthread_condattr_destroy(&attr)
        precondition(rc2 == 0, "pthread_cond_init failed: \(rc2)")
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Takes the lock.
    @inline(__always)
    package func lock() { pthread_mutex_lock(mutex) }

    /// Releases the lock.
    @inline(__always)
    package func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with the lock held.
    @inline(__always)
    package func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a broadcast; the lock must be held. Wake-ups may be
    /// spurious: wait in a loop on the condition.
    package func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits for a broadcast until `deadline` (``monotonicNanoseconds()``);
    /// the lock must be held. Returns false when the deadline passed.
    package func wait(untilMonotonicNanoseconds deadline: UInt64) -> Bool {
        var ts = timespec(
            tv_sec: Int(deadline / 1_000_000_000),
            tv_nsec: Int(deadline % 1_000_000_000)
        )
        return pthread_cond_timedwait(condition, mutex, &ts) != ETIMEDOUT
    }

    /// Wakes every thread waiting on the condition.
    package func broadcast() { pthread_cond_broadcast(condition) }
}

/// Now, on the monotonic clock, in nanoseconds.
package func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `0...UInt64.max / 2`.
    var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        if seconds > 4_000_000_000 { return UInt64.max / 2 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
