/// Runs `body` on Swift's cooperative pool and blocks the calling thread
/// (the main thread, never a pool thread) until it returns or `timeout`
/// seconds pass.
func runAsync<T: Sendable>(
    timeout: Double, _ body: @escaping @Sendable () async throws -> T
) throws -> T {
    let done = Latch(1)
    let result = Box<Result<T, any Error>?>(nil)
    Task.detached {
        do {
            result.value = .success(try await body())
        } catch {
            result.value = .failure(error)
        }
        done.countDown()
    }
    guard done.wait(seconds: timeout) else {
        throw BenchError.timeout("async run still going after \(Int(timeout)) s")
    }
    return try result.value!.get()
}

/// Records the latest end time of several tasks.
final class EndClock: @unchecked Sendable {
    private let lock = Lock()
    private var last: UInt64 = 0

    func mark() {
        let now = nowNanoseconds()
        lock.withLock { last = max(last, now) }
    }

    var value: UInt64 { lock.withLock { last } }
}
