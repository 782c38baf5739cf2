import CTobyFrame
import Glibc

extension TobyAsyncConnection {
    /// Connects over TCP without blocking a thread: the name is resolved on
    /// a thread of its own (a numeric address needs none), each address it
    /// resolves to is tried in turn with a non-blocking connect on one of
    /// `group`'s loops, and the connection is served by that loop.
    ///
    /// - Parameters:
    ///   - host: A name or a numeric IPv4/IPv6 address.
    ///   - port: The TCP port.
    ///   - configuration: Framing, limits and timeouts of the connection.
    ///   - group: The loops; the connection is served by one of them.
    ///   - timeout: For each address's connect.
    ///   - backPressure: When queued output suspends this connection's sends
    ///     and when they go on (as ``TobyServer/Options/backPressure`` for a
    ///     server).
    ///   - observer: Told that the connect succeeded or failed, and when
    ///     the connection ends (logging: the `TobyTCPLogging` product).
    /// - Throws: ``TobyError/unresolvableHost(host:reason:)``,
    ///   ``TobyError/connectTimedOut(address:timeout:)``,
    ///   ``TobyError/systemAtAddress(operation:address:errno:)`` from the
    ///   last address tried (for example ECONNREFUSED), or
    ///   `CancellationError` (nothing is left open then).
    public static func connect(
        host: String, port: Int, configuration: TobyConfiguration = .default,
        group: TobyEventLoopGroup, timeout: Duration = .seconds(10), backPressure: TobyBackPressure = .init(),
        observer: (any TobyClientObserver)? = nil
    ) async throws -> TobyAsyncConnection {
        try configuration.validate()
        try backPressure.validate()
        let endpoint = try Endpoint.tcp(host: host, port: port)
        guard case .tcp(_, let port16) = endpoint else { throw TobyError.closed }  // a TCP endpoint, always
        return try await reporting(endpoint.description, to: observer) {
            try await connect(
                host: host, port: port16, peer: endpoint.description, configuration: configuration, group: group,
                timeout: timeout, backPressure: backPressure, observer: observer)
        }
    }

    private static func connect(
        host: String, port port16: UInt16, peer: String, configuration: TobyConfiguration,
        group: TobyEventLoopGroup, timeout: Duration, backPressure: TobyBackPressure,
        observer: (any TobyClientObserver)?
    ) async throws -> TobyAsyncConnection {
        let addresses = try await Endpoint.resolve(host: host, port: port16)
        let loop = group.next()
        return try await withTaskExecutorPreference(loop) {
            var lastError: any Error = TobyError.unresolvableHost(host: host, reason: "no address")
            for var address in addresses {
                var fd: Int32 = -1
                let rc = toby_socket_connect_start(&address, &fd)
                if rc != 0 && rc != -EINPROGRESS {
                    lastError = TobyError.systemAtAddress(operation: "connect", address: peer, errno: -rc)
                    continue
                }
                do {
                    return try await finish(
                        fd: fd, pending: rc == -EINPROGRESS, peer: peer, configuration: configuration,
                        backPressure: backPressure, loop: loop, timeout: timeout, observer: observer)
                } catch {
                    if error is CancellationError { throw error }
                    lastError = error
                }
            }
            throw lastError
        }
    }

    /// Connects to a Unix domain socket without blocking a thread.
    ///
    /// - Parameters:
    ///   - unixPath: The socket's path (never truncated).
    ///   - configuration: Framing, limits and timeouts of the connection.
    ///   - group: The loops; the connection is served by one of them.
    ///   - timeout: For the connect.
    ///   - backPressure: As for TCP.
    ///   - observer: As for TCP.
    /// - Throws: ``TobyError/unixPathTooLong(path:length:limit:)``,
    ///   ``TobyError/connectTimedOut(address:timeout:)``,
    ///   ``TobyError/systemAtAddress(operation:address:errno:)``, or `CancellationError`.
    public static func connect(
        unixPath: String, configuration: TobyConfiguration = .default,
        group: TobyEventLoopGroup, timeout: Duration = .seconds(10), backPressure: TobyBackPressure = .init(),
        observer: (any TobyClientObserver)? = nil
    ) async throws -> TobyAsyncConnection {
        try configuration.validate()
        try backPressure.validate()
        let peer = try Endpoint.unixSocket(unixPath).description
        let loop = group.next()
        return try await reporting(peer, to: observer) {
            try await withTaskExecutorPreference(loop) {
                var fd: Int32 = -1
                let rc = toby_socket_connect_unix_start(unixPath, &fd)
                if rc != 0 && rc != -EINPROGRESS && rc != -EAGAIN {
                    throw TobyError.systemAtAddress(operation: "connect", address: peer, errno: -rc)
                }
                return try await finish(
                    fd: fd, pending: rc != 0, peer: peer, configuration: configuration, backPressure: backPressure,
                    loop: loop, timeout: timeout, observer: observer)
            }
        }
    }

    /// Runs a connect and tells `observer` if it failed (a connection that
    /// opens tells it itself, from its loop). Cancellation is not a failure
    /// of the connect, and is not reported.
    private static func reporting(
        _ address: String, to observer: (any TobyClientObserver)?,
        _ connect: () async throws -> TobyAsyncConnection
    ) async throws -> TobyAsyncConnection {
        guard let observer else { return try await connect() }
        do {
            return try await connect()
        } catch let error as TobyError {
            observer.connectFailed(address: address, error: error)
            throw error
        }
    }

    /// On `loop`, for a started connect: waits for it if it is `pending`,
    /// then serves the descriptor as an async connection; on any failure the
    /// descriptor is closed before the error is thrown.
    private static func finish(
        fd: Int32, pending: Bool, peer: String, configuration: TobyConfiguration, backPressure: TobyBackPressure,
        loop: EventLoop, timeout: Duration, observer: (any TobyClientObserver)?
    ) async throws -> TobyAsyncConnection {
        do {
            if pending { try await loop.waitForConnect(fd: fd, to: peer, timeout: timeout) }
            return try adopt(
                fd: fd, peer: peer, configuration: configuration, backPressure: backPressure, loop: loop,
                observer: observer)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// On `loop`: serves a connected descriptor as an async connection.
    private static func adopt(
        fd: Int32, peer: String, configuration: TobyConfiguration, backPressure: TobyBackPressure, loop: EventLoop,
        observer: (any TobyClientObserver)?
    ) throws(TobyError) -> TobyAsyncConnection {
        final class Made: @unchecked Sendable { var connection: TobyAsyncConnection? }
        let made = Made()
        var options = TobyServer.Options()
        options.backPressure = backPressure
        options.observer = observer.map { ClientObserverBridge(observer: $0) }
        let core = ServerCore(listenFD: -1, unixPath: nil, configuration: configuration, options: options) { core in
            let connection = TobyAsyncConnection(core: core)
            made.connection = connection
            return AsyncClientBridge(connection: connection)
        }
        _ = try loop.serve(fd: fd, peer: peer, core: core)
        // Made synchronously by serve's open(); never nil here. The box
        // lets go of it so the factory does not keep the connection alive.
        let connection = made.connection
        made.connection = nil
        guard let connection else { throw .closed }
        return connection
    }
}

/// The handler of a client async connection: inbound to its inbox.
struct AsyncClientBridge: TobyServerHandler {
    let connection: TobyAsyncConnection

    func connectionOpened(_ core: TobyConnection) {
        // Reads go on while the output is full: see `pausesReadingForOutput`.
        core.pausesReadingForOutput = false
    }

    func received(_ messages: TobyMessages, on core: TobyConnection) {
        connection.loopReceived(messages)
    }

    func inputEnded(on core: TobyConnection) {
        connection.loopEnded(nil)
    }

    func connectionClosed(_ core: TobyConnection, error: TobyError?) {
        connection.loopEnded(error)
    }
}

extension EventLoop {
    /// Waits for a non-blocking connect of `fd` to `address` to complete,
    /// with the errors the blocking connect has: ``TobyError/systemAtAddress(operation:address:errno:)``
    /// for a refusal, ``TobyError/connectTimedOut(address:timeout:)``.
    func waitForConnect(fd: Int32, to address: String, timeout: Duration) async throws {
        do {
            try await waitWritable(fd: fd, timeout: timeout)
        } catch TobyError.timedOut(let waited) {
            throw TobyError.connectTimedOut(address: address, timeout: waited)
        }
        let result = toby_socket_connect_finish(fd)
        if result != 0 { throw TobyError.systemAtAddress(operation: "connect", address: address, errno: -result) }
    }
}
