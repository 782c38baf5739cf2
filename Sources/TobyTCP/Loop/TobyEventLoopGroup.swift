import Glibc

/// A fixed set of event-loop threads, by default one per core.
///
/// Each loop owns the connections it accepted outright: they are read,
/// handled and written on its thread alone, with no lock on their hot path.
/// Servers share a group, or make their own.
public final class TobyEventLoopGroup: Sendable {
    let loops: [EventLoop]
    private let pick = ConditionLock()
    nonisolated(unsafe) private var nextLoop = 0  // guarded by pick

    /// The loop for the next client connection, round-robin.
    func next() -> EventLoop {
        pick.withLock {
            let loop = loops[nextLoop % loops.count]
            nextLoop &+= 1
            return loop
        }
    }

    /// The number of processors this process may run on (at least 1).
    public static var coreCount: Int {
        let count = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return count > 0 ? count : 1
    }

    /// Starts `threads` loop threads.
    ///
    /// - Throws: ``TobyError/invalidConfiguration(_:)`` if `threads` is not
    ///   in `1...1024`; ``TobyError/system(operation:errno:)`` if descriptors
    ///   or threads ran out (any loop already started is stopped again).
    public init(threads: Int = TobyEventLoopGroup.coreCount) throws(TobyError) {
        guard threads >= 1 && threads <= 1024 else {
            throw .invalidConfiguration("an event loop group needs 1...1024 threads (got \(threads))")
        }
        var loops: [EventLoop] = []
        for index in 0..<threads {
            do {
                loops.append(try EventLoop.start(index: index))
            } catch {
                for loop in loops { loop.stop() }
                throw error
            }
        }
        self.loops = loops
    }

    /// The number of loop threads.
    public var threadCount: Int { loops.count }

    /// Stops every loop: connections are closed (what is queued is written
    /// as far as the sockets take it now), servers stop accepting, and the
    /// threads end. Waits for that, unless called on a loop thread. Calling
    /// it again does nothing.
    public func shutdown() {
        for loop in loops { loop.stop() }
    }

    deinit {
        shutdown()
    }
}
