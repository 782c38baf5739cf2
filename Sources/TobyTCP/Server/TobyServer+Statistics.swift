import Glibc

extension TobyServer {
    /// What a server has done since it started, summed over its loops.
    ///
    /// Counting costs a plain integer addition on the loop thread per event
    /// (a read, a batch, a flush), never a lock or an atomic per message: each
    /// loop keeps its own counters for each server, and ``statistics()`` asks
    /// every loop for its share and adds them up.
    public struct Statistics: Sendable, Equatable, CustomStringConvertible {
        /// Connections open now.
        public var connectionsOpen = 0
        /// Connections accepted since the server started.
        public var connectionsAccepted = 0
        /// Connections that have ended (for any reason).
        public var connectionsClosed = 0
        /// Times `accept` failed (descriptors or memory ran out).
        public var acceptFailures = 0
        /// Messages delivered to the application.
        public var messagesReceived = 0
        /// Bytes read off the sockets, prefixes included.
        public var bytesReceived = 0
        /// Messages the connections accepted for sending.
        public var messagesSent = 0
        /// Bytes handed to the kernel, prefixes included.
        public var bytesSent = 0
        /// Connections ended by a frame over `maxFrameLength`.
        public var framesTooLarge = 0
        /// Connections ended by a peer that closed mid-frame.
        public var framesTruncated = 0
        /// Connections ended by `readTimeout`.
        public var readTimeouts = 0
        /// Connections ended by a reset (or a broken pipe).
        public var resets = 0
        /// Back-pressure episodes: times a connection stopped being read
        /// because its queued output reached the high-water mark.
        public var readPauses = 0
        /// Async sends that gave up after `writeTimeout`.
        public var writeTimeouts = 0

        /// Empty statistics.
        public init() {}

        /// One line with every figure.
        public var description: String {
            "connections \(connectionsOpen) open, \(connectionsAccepted) accepted, \(connectionsClosed) closed, "
                + "\(acceptFailures) accept failures; in \(messagesReceived) messages / \(bytesReceived) bytes; "
                + "out \(messagesSent) messages / \(bytesSent) bytes; ended by frame too large \(framesTooLarge), "
                + "truncated \(framesTruncated), read timeout \(readTimeouts), reset \(resets); "
                + "reads paused \(readPauses); write timeouts \(writeTimeouts)"
        }

        /// The figures that loops count and a snapshot sums (the rest, open
        /// connections and accept failures, the server counts itself).
        static var loopCounted: [WritableKeyPath<Statistics, Int>] {
            [
                \.connectionsAccepted, \.connectionsClosed, \.messagesReceived, \.bytesReceived, \.messagesSent,
                \.bytesSent, \.framesTooLarge, \.framesTruncated, \.readTimeouts, \.resets, \.readPauses,
                \.writeTimeouts,
            ]
        }

        /// Adds another share (a loop's) to these figures.
        mutating func add(_ other: Statistics) {
            for field in Statistics.loopCounted { self[keyPath: field] += other[keyPath: field] }
        }
    }

    /// The server's statistics now: each loop's counters, summed.
    ///
    /// Waits until every loop has answered (a job on each, taken between
    /// two events: microseconds unless a loop is busy). On a loop thread,
    /// which must not wait, it returns that loop's share only, plus what
    /// the server counts itself (connections open, accept failures).
    public func statistics() -> Statistics {
        var total = Statistics()
        let core = self.core
        if EventLoop.onAnyLoop {
            for loop in group.loops where loop.isCurrent { total.add(loop.counters(for: core).figures) }
        } else {
            let answers = ConditionLock()
            nonisolated(unsafe) var shares: [Statistics] = []
            nonisolated(unsafe) var pending = 0
            for loop in group.loops {
                let queued = loop.enqueue(
                    .run {
                        let share = loop.counters(for: core).figures
                        answers.withLock {
                            shares.append(share)
                            pending -= 1
                            answers.broadcast()
                        }
                    })
                if queued { answers.withLock { pending += 1 } }
            }
            answers.withLock {
                while pending > 0 { answers.wait() }
                for share in shares { total.add(share) }
            }
        }
        total.connectionsOpen = core.liveConnections
        total.acceptFailures = core.acceptFailureCount
        return total
    }
}

/// One loop's counters for one server: touched only on that loop's thread.
///
/// Unchecked exclusivity: the counters are bumped on the hot path of every
/// read and flush, and a checked class property would cost a runtime access
/// check per bump (measured: the 64-connection handler echo 13% slower).
/// Only the loop's own thread ever touches them, one access at a time.
final class ServerCounters {
    @exclusivity(unchecked) var figures = TobyServer.Statistics()
}
