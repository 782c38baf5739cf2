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
        /// Queued output above which the loop stops reading a connection,
        /// until the peer has drained it to ``writeLowWaterMark``: a client
        /// that never reads its replies costs bounded memory. Default 1 MiB.
        public var writeHighWaterMark: Int
        /// Queued output at or below which reading resumes. Default 256 KiB.
        public var writeLowWaterMark: Int
        /// The listen backlog. Default 1024.
        public var backlog: Int

        /// Makes options; the defaults suit most servers.
        public init(writeHighWaterMark: Int = 1 << 20, writeLowWaterMark: Int = 256 << 10, backlog: Int = 1024) {
            self.writeHighWaterMark = writeHighWaterMark
            self.writeLowWaterMark = writeLowWaterMark
            self.backlog = backlog
        }

        func validate() throws(TobyError) {
            guard writeHighWaterMark >= 1 else {
                throw .invalidConfiguration("writeHighWaterMark must be at least 1 (got \(writeHighWaterMark))")
            }
            guard writeLowWaterMark >= 0, writeLowWaterMark < writeHighWaterMark else {
                throw .invalidConfiguration(
                    "writeLowWaterMark must be in 0..<writeHighWaterMark (got \(writeLowWaterMark), high \(writeHighWaterMark))")
            }
            guard backlog >= 1 else { throw .invalidConfiguration("backlog must be at least 1 (got \(backlog))") }
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
    private let closeLock = ConditionLock()
    nonisolated(unsafe) private var closed = false  // guarded by closeLock
    nonisolated(unsafe) private var finished = false  // guarded by closeLock
    nonisolated(unsafe) private var closeWaiters: [CheckedContinuation<Void, Never>] = []  // guarded by closeLock

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
        guard let port16 = UInt16(exactly: port) else {
            throw .invalidConfiguration("port must be in 0...65535 (got \(port))")
        }
        var fd: Int32 = -1
        var bound: UInt16 = 0
        var gaiError: Int32 = 0
        let rc = toby_socket_listen_tcp(host, port16, Int32(clamping: options.backlog), &fd, &bound, &gaiError)
        if rc == TOBY_EINVAL {
            throw .unresolvableHost(host: host, reason: String(cString: gai_strerror(gaiError)))
        }
        if rc != 0 { throw .system(operation: "listen on \(TobyMessenger.describe(host: host, port: port16))", errno: -rc) }
        return try TobyServer(
            fd: fd, unixPath: nil, address: TobyMessenger.describe(host: host, port: bound), port: Int(bound),
            configuration: configuration, options: options, group: group, handler: handler)
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
        try TobyListener.checkUnixPath(unixPath)
        var fd: Int32 = -1
        let rc = toby_socket_listen_unix(unixPath, Int32(clamping: options.backlog), &fd)
        if rc != 0 { throw .system(operation: "listen on unix:\(unixPath)", errno: -rc) }
        return try TobyServer(
            fd: fd, unixPath: unixPath, address: "unix:\(unixPath)", port: 0,
            configuration: configuration, options: options, group: group, handler: handler)
    }

    private init(
        fd: Int32, unixPath: String?, address: String, port: Int, configuration: TobyConfiguration,
        options: Options, group: TobyEventLoopGroup?,
        handler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) throws(TobyError) {
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
        self.core = ServerCore(listenFD: fd, unixPath: unixPath, configuration: configuration, options: options,
                               makeHandler: handler)
        // Register on every loop, each on its own thread.
        let failures = ConditionLock()
        nonisolated(unsafe) var firstError: TobyError?
        nonisolated(unsafe) var pending = loops.loops.count
        let core = self.core
        for loop in loops.loops {
            let queued = loop.enqueue(.run {
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

    deinit {
        close()
    }

    /// Connections open now.
    public var connectionCount: Int { core.liveConnections }

    /// Times `accept` failed (for example with EMFILE when descriptors ran
    /// out: the server pauses accepting and resumes by itself).
    public var acceptFailureCount: Int { core.acceptFailureCount }

    /// The last `accept` failure, if any.
    public var lastAcceptFailure: TobyError? { core.lastAcceptFailure }

    /// Stops the server: stops accepting, closes every connection
    /// gracefully (everything queued is sent, then the stream ends and the
    /// descriptor is closed), waits up to `gracePeriod` for the sockets to
    /// take what is queued, aborts the connections left, removes a
    /// Unix socket file, and stops the loops if the server made them.
    /// Calling it again does nothing. On a loop thread (a handler, or the
    /// last reference dropped there) it cannot wait for the loops: it then
    /// only starts the same steps, which the loops finish by themselves.
    public func close(gracePeriod: Duration = .seconds(5)) {
        let first = closeLock.withLock {
            let first = !closed
            closed = true
            return first
        }
        guard first else { return }
        if EventLoop.onAnyLoop {
            closeWithoutWaiting()
            return
        }
        stopAccepting()
        let core = self.core
        for loop in group.loops {
            loop.enqueue(.run { loop.closeConnections(of: core, abortive: false) })
        }
        let deadline = monotonicNanoseconds() &+ gracePeriod.clampedNanoseconds
        if !core.waitForNoConnections(until: deadline) {
            for loop in group.loops {
                loop.enqueue(.run { loop.closeConnections(of: core, abortive: true) })
            }
            _ = core.waitForNoConnections(until: monotonicNanoseconds() &+ 1_000_000_000)
        }
        if ownsGroup { group.shutdown() }
        _ = Glibc.close(core.listenFD)
        if let unixPath = core.unixPath { _ = unlink(unixPath) }
        markFinished()
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
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = closeLock.withLock {
                if finished { return true }
                closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// `close` on a loop thread: every loop stops accepting and closes this
    /// server's connections gracefully; the last one to do so closes the
    /// listening socket (and stops an owned group). Captures no `self`, so it
    /// is safe from `deinit`.
    private func closeWithoutWaiting() {
        let core = self.core
        let group = self.group
        let ownsGroup = self.ownsGroup
        final class Countdown: @unchecked Sendable {
            let lock = ConditionLock()
            var left: Int  // guarded by lock
            init(_ count: Int) { left = count }
            func done() -> Bool { lock.withLock { left -= 1; return left == 0 } }
        }
        let countdown = Countdown(group.loops.count)
        let finish: @Sendable () -> Void = {
            _ = Glibc.close(core.listenFD)
            if let unixPath = core.unixPath { _ = unlink(unixPath) }
            if ownsGroup { group.shutdown() }
        }
        for loop in group.loops {
            let queued = loop.enqueue(.run {
                loop.removeListener(core)
                loop.closeConnections(of: core, abortive: false)
                if countdown.done() { finish() }
            })
            if !queued && countdown.done() { finish() }
        }
        markFinished()
    }

    /// Resumes every `waitUntilClosed()`, and any later one at once.
    private func markFinished() {
        let waiters = closeLock.withLock {
            finished = true
            let waiters = closeWaiters
            closeWaiters.removeAll()
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Removes the listener from every loop and waits until each has done so.
    private func stopAccepting() {
        let core = self.core
        let done = ConditionLock()
        nonisolated(unsafe) var pending = 0
        for loop in group.loops {
            let queued = loop.enqueue(.run {
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
