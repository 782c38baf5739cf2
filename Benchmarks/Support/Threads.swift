import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// The library's pthread mutex (the benchmarks avoid Foundation, and
/// ThreadSanitizer understands it).
typealias Lock = ConditionLock

/// Counts down to zero; `wait` blocks until then or until a deadline.
final class Latch: @unchecked Sendable {
    private let lock = ConditionLock()
    private var count: Int  // guarded by lock

    init(_ count: Int) { self.count = count }

    func countDown() {
        lock.withLock {
            count -= 1
            if count <= 0 { lock.broadcast() }
        }
    }

    /// True once the count reached zero, false if `seconds` passed first.
    @discardableResult
    func wait(seconds: Double) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        return lock.withLock {
            while count > 0 {
                if !lock.wait(untilMonotonicNanoseconds: deadline) { return count <= 0 }
            }
            return true
        }
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

/// A joinable thread running `body`, with 1 MiB of stack.
final class Worker: @unchecked Sendable {
    private let handle: Threads.Handle

    init(_ body: @escaping @Sendable () -> Void) {
        do throws(TobyError) {
            handle = try Threads.start(stackSize: 1 << 20, body)
        } catch {
            preconditionFailure("\(error)")
        }
    }

    func join() { handle.join() }
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
        workers.append(
            Worker {
                do { try body() } catch { failures.record(error) }
                backgroundDone.countDown()
            })
    }
    for body in timed {
        workers.append(
            Worker {
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
