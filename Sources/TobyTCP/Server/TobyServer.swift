import CTobyFrame
import Glibc

/// A TobyTcp server on event loops: thousands of connections on one thread
/// per core, each connection's messages handed to its handler on the
/// connection's loop thread, lent where they lie in the ring.
///
/// ```swift
/// struct Echo: TobyServerHandler {
///     func received(_ messages: TobyMessages, on connection: TobyConnection) {
///         try? connection.send(contentsOf: messages)
///     }
/// }
/// let server = try TobyServer.listen(host: "127.0.0.1", port: 0) { _ in Echo() }
/// print("listening on \(server.address)")
/// // ...
/// server.close()
/// ```
///
/// One listening socket is shared by every loop of the group, registered in
/// each with `EPOLLEXCLUSIVE`: a new connection wakes one idle loop, which
/// accepts it and keeps it, with no hand-off between threads.
public final class TobyServer: Sendable {
    /// Settings of a server beyond those of its connections.
    public struct Options: Sendable, Equatable {
        /// When queued output stops the loop reading a connection (and
        /// suspends async sends), and when reading resumes: the same value an
        /// async client's connect takes. Default 1 MiB / 256 KiB.
        public var backPressure: TobyBackPressure
        /// Queued output above which the loop stops reading a connection,
        /// until the peer has drained it to ``writeLowWaterMark``: a client
        /// that never reads its replies costs bounded memory. Default 1 MiB.
        /// (``backPressure``'s high-water mark.)
        public var writeHighWaterMark: Int {
            get { backPressure.highWaterMark }
            set { backPressure.highWaterMark = newValue }
        }
        /// Queued output at or below which reading resumes. Default 256 KiB.
        /// (``backPressure``'s low-water mark.)
        public var writeLowWaterMark: Int {
            get { backPressure.lowWaterMark }
            set { backPressure.lowWaterMark = newValue }
        }
        /// The listen backlog. Default 1024.
        public var backlog: Int
        /// Hears connection-level events (opened, closed and why, accept
        /// failures), for logging: see ``TobyServerObserver``. Default none,
        /// which costs nothing. Not part of `==`.
        public var observer: (any TobyServerObserver)?
        /// On shutdown, once the grace period is over: how long a connection
        /// may take to send the replies it owes, end its stream and see the
        /// peer's end (or, the peer having acknowledged everything, its
        /// silence) before it is reset. Default 2 s.
        public var shutdownLinger: Duration

        /// Makes options; the defaults suit most servers.
        public init(
            writeHighWaterMark: Int = 1 << 20, writeLowWaterMark: Int = 256 << 10, backlog: Int = 1024,
            shutdownLinger: Duration = .seconds(2)
        ) {
            self.backPressure = TobyBackPressure(highWaterMark: writeHighWaterMark, lowWaterMark: writeLowWaterMark)
            self.backlog = backlog
            self.shutdownLinger = shutdownLinger
        }

        /// Equal when every setting but the ``observer`` is.
        public static func == (lhs: Options, rhs: Options) -> Bool {
            lhs.backPressure == rhs.backPressure && lhs.backlog == rhs.backlog && lhs.shutdownLinger == rhs.shutdownLinger
        }

        func validate() throws(TobyError) {
            try backPressure.validate()
            guard backlog >= 1 else { throw .invalidConfiguration("backlog must be at least 1 (got \(backlog))") }
            guard shutdownLinger >= .zero else {
                throw .invalidConfiguration("shutdownLinger must not be negative (got \(shutdownLinger))")
            }
        }
    }

    /// The bound address: `"127.0.0.1:4000"` (with the port picked for port
    /// 0), `"[::1]:4000"`, or `"unix:/path"`.
    public let address: String

    /// The bound TCP port (the one picked for port 0), or 0 for a Unix socket.
    public let port: Int

    /// The loops serving this server's connections.
    public let group: TobyEventLoopGroup

    let core: ServerCore
    private let ownsGroup: Bool
    private let closing = Closing()

    /// Whether the server was closed, and who waits for the close to end;
    /// apart from the server so that a close finishing on another thread
    /// (after the server's `deinit`) need not keep the server.
    private final class Closing: @unchecked Sendable {
        let lock = ConditionLock()
        var started = false  // guarded by lock
        var finished = false  // guarded by lock
        var waiters: [CheckedContinuation<Void, Never>] = []  // guarded by lock

        /// True for the first caller only.
        func start() -> Bool {
            lock.withLock {
                defer { started = true }
                return !started
            }
        }

        /// Resumes every waiter, and any later one at once.
        func finish() {
            let waiting = lock.withLock {
                finished = true
                defer { waiters.removeAll() }
                return waiters
            }
            for waiter in waiting { waiter.resume() }
        }

        func wait() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = lock.withLock {
                    if finished { return true }
                    waiters.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
        }
    }

    /// Listens on a TCP address and starts serving.
    ///
    /// - Parameters:
    ///   - host: A numeric address or a name; `"0.0.0.0"` or `"::"` for all.
    ///   - port: The port; 0 picks a free one (read it from ``port``).
    ///   - configuration: Framing, limits and timeouts of every connection.
    ///     `readTimeout`, if set, is the longest a connection may go without
    ///     completing a frame before it ends with ``TobyError/timedOut(_:)``.
    ///   - options: Back-pressure and backlog.
    ///   - group: The loops to serve on; nil makes a group of one loop per
    ///     core that the server owns and stops on ``close(gracePeriod:)``.
    ///   - handler: Makes the handler of each new connection, on its loop.
    /// - Throws: ``TobyError`` if the address cannot be bound or the loops
    ///   cannot start.
    public static func listen(
        host: String = "127.0.0.1", port: Int, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil,
        handler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) throws(TobyError) -> TobyServer {
        try options.validate()
        try configuration.validate()
        let (fd, bound) = try Endpoint.tcp(host: host, port: port).listen(backlog: options.backlog)
        return try TobyServer(
            fd: fd, bound: bound, configuration: configuration, options: options, group: group, handler: handler)
    }

    /// Listens on a Unix domain socket path and starts serving. The path
    /// must not exist; ``close(gracePeriod:)`` removes it.
    public static func listen(
        unixPath: String, configuration: TobyConfiguration = .default,
        options: Options = Options(), group: TobyEventLoopGroup? = nil,
        handler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) throws(TobyError) -> TobyServer {
        try options.validate()
        try configuration.validate()
        let (fd, bound) = try Endpoint.unixSocket(unixPath).listen(backlog: options.backlog)
        return try TobyServer(
            fd: fd, bound: bound, configuration: configuration, options: options, group: group, handler: handler)
    }

    private init(
        fd: Int32, bound: Endpoint, configuration: TobyConfiguration, options: Options, group: TobyEventLoopGroup?,
        handler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) throws(TobyError) {
        let unixPath = bound.unixPath
        let address = bound.description
        let port = bound.port
        func abandon() {
            _ = Glibc.close(fd)
            if let unixPath { _ = unlink(unixPath) }
        }
        let rc = toby_socket_set_nonblocking(fd, 1)
        if rc != 0 {
            abandon()
            throw .system(operation: "fcntl(O_NONBLOCK)", errno: -rc)
        }
        let loops: TobyEventLoopGroup
        if let group {
            loops = group
        } else {
            do throws(TobyError) {
                loops = try TobyEventLoopGroup()
            } catch {
                abandon()
                throw error
            }
        }
        self.group = loops
        self.ownsGroup = group == nil
        self.address = address
        self.port = port
        self.core = ServerCore(
            listenFD: fd, unixPath: unixPath, address: address, configuration: configuration, options: options,
            makeHandler: handler)
        // Register on every loop, each on its own thread.
        let failures = ConditionLock()
        nonisolated(unsafe) var firstError: TobyError?
        nonisolated(unsafe) var pending = loops.loops.count
        let core = self.core
        for loop in loops.loops {
            let queued = loop.enqueue(
                .run {
                    var failure: TobyError?
                    do throws(TobyError) { try loop.addListener(core) } catch { failure = error }
                    failures.withLock {
                        if firstError == nil { firstError = failure }
                        pending -= 1
                        failures.broadcast()
                    }
                })
            if !queued {
                failures.withLock {
                    if firstError == nil { firstError = .closed }
                    pending -= 1
                }
            }
        }
        let error: TobyError? = failures.withLock {
            while pending > 0 { failures.wait() }
            return firstError
        }
        if let error {
            stopAccepting()
            if ownsGroup { loops.shutdown() }
            abandon()
            throw error
        }
    }

    /// A server dropped while open closes with no grace period: delivery
    /// stops at once, replies already owed still go out (see ``close(gracePeriod:)``).
    deinit {
        close(gracePeriod: .zero)
    }

    /// Connections open now.
    public var connectionCount: Int { core.liveConnections }

    /// Times `accept` failed (for example with EMFILE when descriptors ran
    /// out: the server pauses accepting and resumes by itself).
    public var acceptFailureCount: Int { core.acceptFailureCount }

    /// The last `accept` failure, if any.
    public var lastAcceptFailure: TobyError? { core.lastAcceptFailure }

    /// Stops the server gracefully, as a load balancer drains a backend:
    ///
    /// 1. Stops accepting (new connections are refused by the kernel).
    /// 2. Goes on serving the open connections, as usual, until they end or
    ///    `gracePeriod` passes.
    /// 3. Then stops delivering messages to the connections left (what their
    ///    peers still send is read and discarded), lets each send the
    ///    replies it queued or still owes (the handler's
    ///    ``TobyServerHandler/shouldQuiesce(on:)``; an async task sees the
    ///    end of its inbound), ends its stream, and lingers until the peer
    ///    ends too, so that no reset destroys replies in flight.
    /// 4. Resets what is still open after ``Options/shutdownLinger``.
    ///
    /// So a client can rely on this: every message delivered to the server
    /// has the replies queued for it delivered before the stream ends; a
    /// message whose reply never came was never delivered.
    ///
    /// Then removes a Unix socket file and stops the loops if the server
    /// made them. Calling it again does nothing. On a loop thread (a
    /// handler, or the last reference dropped there) it cannot wait: the
    /// same steps then run on a thread of their own.
    public func close(gracePeriod: Duration = .seconds(5)) {
        guard closing.start() else { return }
        let core = self.core
        let group = self.group
        let ownsGroup = self.ownsGroup
        let closing = self.closing
        if EventLoop.onAnyLoop {
            // Waiting here would stop this loop serving: the waiting goes to
            // a thread of its own. Captures no `self`, so safe from `deinit`.
            stopAcceptingWithoutWaiting()
            do {
                try Threads.spawn(stackSize: 256 << 10) {
                    TobyServer.shutDown(core: core, group: group, ownsGroup: ownsGroup, gracePeriod: gracePeriod)
                    closing.finish()
                }
            } catch {
                // No thread to be had: quiesce now, with no grace period.
                TobyServer.quiesceWithoutWaiting(core: core, group: group, ownsGroup: ownsGroup)
                closing.finish()
            }
            return
        }
        stopAccepting()
        TobyServer.shutDown(core: core, group: group, ownsGroup: ownsGroup, gracePeriod: gracePeriod)
        closing.finish()
    }

    /// The waiting part of ``close(gracePeriod:)``, on a thread that is not a loop's.
    private static func shutDown(core: ServerCore, group: TobyEventLoopGroup, ownsGroup: Bool, gracePeriod: Duration) {
        let graceEnd = monotonicNanoseconds() &+ gracePeriod.clampedNanoseconds
        if !core.waitForNoConnections(until: graceEnd) {
            for loop in group.loops {
                loop.enqueue(.run { loop.quiesceConnections(of: core) })
            }
            // Each connection resets itself at the end of its linger; the
            // margin covers loops that are slow to get there.
            let lingerEnd = monotonicNanoseconds() &+ core.options.shutdownLinger.clampedNanoseconds
            if !core.waitForNoConnections(until: lingerEnd &+ 1_000_000_000) {
                for loop in group.loops {
                    loop.enqueue(.run { loop.abortConnections(of: core) })
                }
                _ = core.waitForNoConnections(until: monotonicNanoseconds() &+ 1_000_000_000)
            }
        }
        if ownsGroup { group.shutdown() }
        _ = Glibc.close(core.listenFD)
        if let unixPath = core.unixPath { _ = unlink(unixPath) }
    }

    /// ``close(gracePeriod:)`` for async code: the waiting happens on a
    /// thread of its own, so no thread of Swift's pool is blocked.
    public func shutdown(gracePeriod: Duration = .seconds(5)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            do {
                try Threads.spawn(stackSize: 256 << 10) {
                    self.close(gracePeriod: gracePeriod)
                    continuation.resume()
                }
            } catch {
                // No thread to be had: close here rather than not at all.
                self.close(gracePeriod: gracePeriod)
                continuation.resume()
            }
        }
    }

    /// Suspends until the server has been closed (by anyone).
    public func waitUntilClosed() async {
        await closing.wait()
    }

    /// On a loop thread: every loop stops accepting, without waiting.
    private func stopAcceptingWithoutWaiting() {
        let core = self.core
        for loop in group.loops {
            loop.enqueue(.run { loop.removeListener(core) })
        }
    }

    /// On a loop thread with no thread to wait on: every loop quiesces this
    /// server's connections at once; the last loop to do so closes the
    /// listening socket (and stops an owned group).
    private static func quiesceWithoutWaiting(core: ServerCore, group: TobyEventLoopGroup, ownsGroup: Bool) {
        final class Countdown: @unchecked Sendable {
            let lock = ConditionLock()
            var left: Int  // guarded by lock
            init(_ count: Int) { left = count }
            func done() -> Bool {
                lock.withLock {
                    left -= 1; return left == 0
                }
            }
        }
        let countdown = Countdown(group.loops.count)
        let finish: @Sendable () -> Void = {
            _ = Glibc.close(core.listenFD)
            if let unixPath = core.unixPath { _ = unlink(unixPath) }
            if ownsGroup { group.shutdown() }
        }
        for loop in group.loops {
            let queued = loop.enqueue(
                .run {
                    loop.removeListener(core)
                    loop.quiesceConnections(of: core)
                    if countdown.done() { finish() }
                })
            if !queued && countdown.done() { finish() }
        }
    }

    /// Removes the listener from every loop and waits until each has done so.
    private func stopAccepting() {
        let core = self.core
        let done = ConditionLock()
        nonisolated(unsafe) var pending = 0
        for loop in group.loops {
            let queued = loop.enqueue(
                .run {
                    loop.removeListener(core)
                    done.withLock {
                        pending -= 1
                        done.broadcast()
                    }
                })
            if queued { done.withLock { pending += 1 } }
        }
        done.withLock {
            while pending > 0 { done.wait() }
        }
    }
}
