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
    private var spareFD: Int32 = -1  // guarded by lock; see `acceptFailedForLackOfDescriptors`

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
    public init(
        host: String = "127.0.0.1", port: Int, backlog: Int = 1024,
        configuration: TobyConfiguration = .default
    ) throws(TobyError) {
        guard let port16 = UInt16(exactly: port) else {
            throw .invalidConfiguration("port must be in 0...65535 (got \(port))")
        }
        var fd: Int32 = -1
        var bound: UInt16 = 0
        var gaiError: Int32 = 0
        let rc = toby_socket_listen_tcp(host, port16, Int32(clamping: backlog), &fd, &bound, &gaiError)
        if rc == TOBY_EINVAL {
            throw .unresolvableHost(host: host, reason: String(cString: gai_strerror(gaiError)))
        }
        if rc != 0 {
            throw .systemAtAddress(
                operation: "bind/listen", address: TobyMessenger.describe(host: host, port: port16), errno: -rc)
        }
        self.configuration = configuration
        self.port = Int(bound)
        self.address = TobyMessenger.describe(host: host, port: bound)
        self.socket = SocketHandle(fd: fd)
        self.unixPath = nil
        self.spareFD = TobyListener.openSpare()
    }

    /// Listens on a Unix domain socket at `unixPath`, which must not exist.
    /// The file is removed when the listener closes.
    ///
    /// - Throws: ``TobyError/unixPathTooLong(path:length:limit:)`` if the
    ///   path does not fit in `sun_path` (it is never truncated), or
    ///   ``TobyError/systemAtAddress(operation:address:errno:)`` (`EADDRINUSE` if it exists).
    public init(unixPath: String, backlog: Int = 1024, configuration: TobyConfiguration = .default) throws(TobyError) {
        try TobyListener.checkUnixPath(unixPath)
        var fd: Int32 = -1
        let rc = toby_socket_listen_unix(unixPath, Int32(clamping: backlog), &fd)
        if rc != 0 { throw .systemAtAddress(operation: "bind/listen", address: "unix:\(unixPath)", errno: -rc) }
        self.configuration = configuration
        self.port = 0
        self.address = "unix:\(unixPath)"
        self.socket = SocketHandle(fd: fd)
        self.unixPath = unixPath
        self.spareFD = TobyListener.openSpare()
    }

    deinit {
        close()
    }

    /// A descriptor held in reserve for ``accept()`` to survive `EMFILE`;
    /// -1 if even that could not be had (accepting then still works, only
    /// the pending connection cannot be shed when descriptors run out).
    private static func openSpare() -> Int32 {
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd >= 0 || errno != EINTR { return fd }
        }
    }

    static func checkUnixPath(_ path: String) throws(TobyError) {
        let limit = toby_socket_unix_path_max()
        if path.utf8.count > limit {
            throw .unixPathTooLong(path: path, length: path.utf8.count, limit: limit)
        }
        if path.isEmpty { throw .invalidConfiguration("Unix socket path is empty") }
    }

    /// Waits for the next connection.
    ///
    /// - Returns: A messenger for it, with this listener's configuration.
    /// **Running out of descriptors.** When the process (`EMFILE`) or the
    /// system (`ENFILE`) has no descriptor left for the new connection,
    /// `accept` throws ``TobyError/outOfDescriptors(address:errno:)`` after
    /// shedding that connection: it briefly gives up a spare descriptor the
    /// listener keeps for this, accepts the pending connection and closes
    /// it (its client sees the connection closed), then takes the spare
    /// again (libuv's `uv__emfile_trick`). So a loop that calls `accept`
    /// again does not spin on a full backlog, connections already accepted
    /// are unaffected, and accepting works again as soon as descriptors
    /// are freed.
    ///
    /// - Returns: A messenger for it, with this listener's configuration.
    /// - Throws: ``TobyError/closed`` once ``close()`` was called (also
    ///   waking an `accept` blocked at that moment),
    ///   ``TobyError/outOfDescriptors(address:errno:)``, or
    ///   ``TobyError/systemAtAddress(operation:address:errno:)``.
    public func accept() throws(TobyError) -> TobyMessenger {
        var fd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        let rc = toby_socket_accept(socket.fd, &fd, &peer, peer.count)
        if rc != 0 {
            if lock.withLock({ closed }) { throw .closed }
            if rc == -EMFILE || rc == -ENFILE {
                shedPendingConnection()
                throw .outOfDescriptors(address: address, errno: -rc)
            }
            throw .systemAtAddress(operation: "accept", address: address, errno: -rc)
        }
        if lock.withLock({ closed }) {
            _ = Glibc.close(fd)
            throw .closed
        }
        let described = String(decoding: peer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var peerText = described
        if let unixPath {
            peerText = described.hasPrefix("pid ") ? "unix:\(unixPath) (\(described))" : "unix:\(unixPath)"
        }
        return TobyMessenger(owning: fd, peer: peerText, configuration: configuration)
    }

    /// After EMFILE/ENFILE: frees the spare descriptor, accepts the pending
    /// connection without blocking and closes it, then takes the spare
    /// again. Without this the connection would stay at the head of the
    /// backlog and every later `accept` would fail at once.
    private func shedPendingConnection() {
        lock.withLock {
            guard spareFD >= 0, !closed else { return }
            _ = Glibc.close(spareFD)
            spareFD = -1
            while true {
                // Only if a connection is still pending: another thread's
                // accept may have taken it, and this one must not block.
                var pfd = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, 0)
                if ready < 0 && errno == EINTR { continue }
                guard ready > 0 else { break }
                let pending = Glibc.accept(socket.fd, nil, nil)  // closed at once
                if pending >= 0 { _ = Glibc.close(pending) }
                if pending < 0 && errno == EINTR { continue }
                break
            }
            spareFD = TobyListener.openSpare()
        }
    }

    /// Stops listening: wakes a blocked ``accept()`` (which throws
    /// ``TobyError/closed``) and removes the Unix socket file. Connections
    /// already accepted are not affected. Calling it again does nothing.
    public func close() {
        let first = lock.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        lock.withLock {
            if spareFD >= 0 { _ = Glibc.close(spareFD) }
            spareFD = -1
        }
        // shutdown wakes a thread blocked in accept(); the fd itself closes
        // with the last owner, so its number cannot be reused under it.
        socket.shutdown(Int32(SHUT_RDWR))
        if let unixPath { _ = unlink(unixPath) }
    }
}
