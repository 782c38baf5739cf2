import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// Accepts TobyTcp connections on a TCP port or a Unix domain socket.
///
/// ```swift
/// let listener = try TobyListener(host: "127.0.0.1", port: 0)
/// print("listening on port \(listener.port)")
/// let messenger = try listener.accept()
/// ```
public final class TobyListener: @unchecked Sendable {
    /// The configuration given to every accepted messenger.
    public let configuration: TobyConfiguration

    /// The bound TCP port (the real one when 0 was asked for); 0 for a Unix
    /// socket.
    public let port: Int

    /// The bound address as text: `"127.0.0.1:4000"` or `"unix:/path"`.
    public let address: String

    private let socket: SocketHandle
    private let unixPath: String?
    private let lock = ConditionLock()
    private var closed = false  // guarded by lock
    // Guarded by lock: running out of descriptors (see ``accept()``).
    private var backoff: UInt64 = 0  // the current pause, ns; 0 when accepting works
    private var retryAt: UInt64 = 0  // monotonic ns before which accept waits
    private var failures = 0

    /// Listens on a TCP address.
    ///
    /// - Parameters:
    ///   - host: Address to bind; `"127.0.0.1"` by default, `"0.0.0.0"` or
    ///     `"::"` for every interface.
    ///   - port: Port to bind; 0 picks a free ephemeral port (read it back
    ///     from ``port``).
    ///   - backlog: Length of the kernel's queue of pending connections.
    ///   - configuration: Given to each accepted messenger.
    /// - Throws: ``TobyError/systemAtAddress(operation:address:errno:)`` (for example
    ///   `EADDRINUSE`), ``TobyError/unresolvableHost(host:reason:)``.
    public convenience init(
        host: String = "127.0.0.1", port: Int, backlog: Int = 1024,
        configuration: TobyConfiguration = .default
    ) throws(TobyError) {
        let (fd, bound) = try Endpoint.tcp(host: host, port: port).listen(backlog: backlog)
        self.init(fd: fd, bound: bound, configuration: configuration)
    }

    /// Listens on a Unix domain socket at `unixPath`, which must not exist.
    /// The file is removed when the listener closes.
    ///
    /// - Throws: ``TobyError/unixPathTooLong(path:length:limit:)`` if the
    ///   path does not fit in `sun_path` (it is never truncated), or
    ///   ``TobyError/systemAtAddress(operation:address:errno:)`` (`EADDRINUSE` if it exists).
    public convenience init(unixPath: String, backlog: Int = 1024, configuration: TobyConfiguration = .default) throws(TobyError)
    {
        let (fd, bound) = try Endpoint.unixSocket(unixPath).listen(backlog: backlog)
        self.init(fd: fd, bound: bound, configuration: configuration)
    }

    private init(fd: Int32, bound: Endpoint, configuration: TobyConfiguration) {
        self.configuration = configuration
        self.port = bound.port
        self.address = bound.description
        self.socket = SocketHandle(fd: fd)
        self.unixPath = bound.unixPath
    }

    deinit {
        close()
    }

    /// Times ``accept()`` failed: descriptors or memory ran out, or the
    /// kernel refused one connection (as ``TobyServer/acceptFailureCount``).
    public var acceptFailureCount: Int { lock.withLock { failures } }

    /// Waits for the next connection.
    ///
    /// **Running out of descriptors.** When the process (`EMFILE`) or the
    /// system (`ENFILE`) has no descriptor left for the new connection, or
    /// memory ran out, `accept` throws at once
    /// (``TobyError/outOfDescriptors(address:errno:)``) and the connection
    /// stays in the kernel's backlog, to be accepted once descriptors are
    /// free: nothing is refused. The next call first pauses, 10 ms doubling
    /// to 1 s while the shortage lasts, so a loop that calls `accept` again
    /// does not spin on the connection at the head of the backlog (the event
    /// loops of ``TobyServer`` back off the same way). ``close()`` ends a
    /// pause at once.
    ///
    /// - Returns: A messenger for it, with this listener's configuration.
    /// - Throws: ``TobyError/closed`` once ``close()`` was called (also
    ///   waking an `accept` blocked at that moment),
    ///   ``TobyError/outOfDescriptors(address:errno:)``, or
    ///   ``TobyError/systemAtAddress(operation:address:errno:)``.
    public func accept() throws(TobyError) -> TobyMessenger {
        try pauseAfterShortage()
        var fd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        let rc = toby_socket_accept(socket.fd, &fd, &peer, peer.count)
        if rc != 0 {
            if lock.withLock({ closed }) { throw .closed }
            let shortage = rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM
            lock.withLock {
                failures += 1
                if shortage {
                    backoff = backoff == 0 ? 10_000_000 : min(backoff * 2, 1_000_000_000)
                    retryAt = monotonicNanoseconds() &+ backoff
                }
            }
            if rc == -EMFILE || rc == -ENFILE { throw .outOfDescriptors(address: address, errno: -rc) }
            throw .systemAtAddress(operation: "accept", address: address, errno: -rc)
        }
        if lock.withLock({ closed }) {
            _ = Glibc.close(fd)
            throw .closed
        }
        lock.withLock { backoff = 0 }
        let described = String(decoding: peer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var peerText = described
        if let unixPath {
            peerText = described.hasPrefix("pid ") ? "unix:\(unixPath) (\(described))" : "unix:\(unixPath)"
        }
        return TobyMessenger(owning: fd, peer: peerText, configuration: configuration)
    }

    /// Waits out the pause a shortage set, unless the listener closes.
    private func pauseAfterShortage() throws(TobyError) {
        lock.lock()
        defer { lock.unlock() }
        while !closed && monotonicNanoseconds() < retryAt {
            _ = lock.wait(untilMonotonicNanoseconds: retryAt)
        }
        if closed { throw .closed }
    }

    /// Stops listening: wakes a blocked ``accept()`` (which throws
    /// ``TobyError/closed``) and removes the Unix socket file. Connections
    /// already accepted are not affected. Calling it again does nothing.
    public func close() {
        let first = lock.withLock { () -> Bool in
            defer { closed = true }
            lock.broadcast()  // ends an accept's pause
            return !closed
        }
        guard first else { return }
        // shutdown wakes a thread blocked in accept(); the fd itself closes
        // with the last owner, so its number cannot be reused under it.
        socket.shutdown(Int32(SHUT_RDWR))
        if let unixPath { _ = unlink(unixPath) }
    }
}
