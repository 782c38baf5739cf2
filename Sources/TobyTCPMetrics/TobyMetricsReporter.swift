import CoreMetrics
import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Reports a server's statistics (``TobyServer/statistics()``) through
/// swift-metrics, every interval: a product of its own, so that the
/// `TobyTCP` library still depends on nothing.
///
/// ```swift
/// let reporter = TobyMetricsReporter(server: server)   // MetricsSystem's factory
/// reporter.start(every: .seconds(1))
/// // ...
/// reporter.stop()
/// ```
///
/// Each report reads the statistics once (one job per loop) and adds what
/// changed since the last report to the counters. Every metric carries the
/// dimension `server_address` (the server's address, as
/// ``TobyServer/address``), plus the dimensions given to the reporter:
///
/// | Name | Kind | What |
/// |---|---|---|
/// | `toby_server_connections_open` | meter (gauge) | connections open |
/// | `toby_server_connections_accepted_total` | counter | connections accepted |
/// | `toby_server_connections_closed_total` | counter | connections ended |
/// | `toby_server_accept_failures_total` | counter | `accept` failures (descriptors, memory) |
/// | `toby_server_messages_received_total` | counter | messages delivered to the application |
/// | `toby_server_messages_sent_total` | counter | messages accepted for sending |
/// | `toby_server_bytes_received_total` | counter | bytes read, prefixes included |
/// | `toby_server_bytes_sent_total` | counter | bytes written, prefixes included |
/// | `toby_server_connection_errors_total` | counter, dimension `kind`: `frame_too_large`, `truncated`, `read_timeout`, `reset` | connections ended by an error |
/// | `toby_server_read_pauses_total` | counter | back-pressure episodes |
/// | `toby_server_write_timeouts_total` | counter | async sends that timed out |
public final class TobyMetricsReporter: @unchecked Sendable {
    /// Every metric name the reporter emits.
    public static let names = [
        "toby_server_connections_open", "toby_server_connections_accepted_total",
        "toby_server_connections_closed_total", "toby_server_accept_failures_total",
        "toby_server_messages_received_total", "toby_server_messages_sent_total",
        "toby_server_bytes_received_total", "toby_server_bytes_sent_total",
        "toby_server_connection_errors_total", "toby_server_read_pauses_total",
        "toby_server_write_timeouts_total",
    ]

    private let server: TobyServer
    private let connectionsOpen: Meter
    private let counters: [(KeyPath<TobyServer.Statistics, Int>, Counter)]

    private let lock = ConditionLock()
    private var last = TobyServer.Statistics()  // guarded by lock
    private var running = false  // guarded by lock
    private var generation = 0  // guarded by lock

    /// A reporter for `server`.
    ///
    /// - Parameters:
    ///   - server: The server whose statistics are reported.
    ///   - dimensions: Added to every metric, after `server_address`.
    ///   - factory: Where the metrics go; by default `MetricsSystem.factory`.
    public init(server: TobyServer, dimensions: [(String, String)] = [], factory: any MetricsFactory = MetricsSystem.factory) {
        self.server = server
        let base = [("server_address", server.address)] + dimensions
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: name, dimensions: base + extra, factory: factory)
        }
        connectionsOpen = Meter(label: "toby_server_connections_open", dimensions: base, factory: factory)
        counters = [
            (\.connectionsAccepted, counter("toby_server_connections_accepted_total")),
            (\.connectionsClosed, counter("toby_server_connections_closed_total")),
            (\.acceptFailures, counter("toby_server_accept_failures_total")),
            (\.messagesReceived, counter("toby_server_messages_received_total")),
            (\.messagesSent, counter("toby_server_messages_sent_total")),
            (\.bytesReceived, counter("toby_server_bytes_received_total")),
            (\.bytesSent, counter("toby_server_bytes_sent_total")),
            (\.framesTooLarge, counter("toby_server_connection_errors_total", [("kind", "frame_too_large")])),
            (\.framesTruncated, counter("toby_server_connection_errors_total", [("kind", "truncated")])),
            (\.readTimeouts, counter("toby_server_connection_errors_total", [("kind", "read_timeout")])),
            (\.resets, counter("toby_server_connection_errors_total", [("kind", "reset")])),
            (\.readPauses, counter("toby_server_read_pauses_total")),
            (\.writeTimeouts, counter("toby_server_write_timeouts_total")),
        ]
    }

    /// Reports once, now: the counters grow by what changed since the last
    /// report, and the gauge takes the number of connections open.
    public func report() {
        let now = server.statistics()
        let previous = lock.withLock {
            defer { last = now }
            return last
        }
        connectionsOpen.set(now.connectionsOpen)
        for (field, counter) in counters {
            let delta = now[keyPath: field] - previous[keyPath: field]
            if delta > 0 { counter.increment(by: delta) }
        }
    }

    /// Reports every `interval`, on a thread of its own, until ``stop()``.
    /// Calling it again while running does nothing.
    public func start(every interval: Duration) {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { return }
        running = true
        generation += 1
        let mine = generation
        let (seconds, attoseconds) = interval.components
        let microseconds = UInt32(clamping: max(1_000, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        do {
            try Threads.spawn(stackSize: 128 << 10) {
                while self.keepsRunning(mine) {
                    usleep(microseconds)
                    guard self.keepsRunning(mine) else { return }
                    self.report()
                }
            }
        } catch {
            running = false
        }
    }

    /// Stops the reports that ``start(every:)`` began (after the one in
    /// progress, if any).
    public func stop() {
        lock.withLock { running = false }
    }

    private func keepsRunning(_ generation: Int) -> Bool {
        lock.withLock { running && self.generation == generation }
    }
}
