import CTobyFrame
import Glibc

/// An address to listen on or connect to, checked when it is made. Every
/// API's openings (``TobyListener``, ``TobyServer``, ``TobyMessenger`` and
/// ``TobyAsyncConnection``) go through it, so they validate, resolve, name
/// and report an address the same way.
enum Endpoint: Sendable, Equatable {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// A TCP endpoint; `port` must be in 0...65535.
    static func tcp(host: String, port: Int) throws(TobyError) -> Endpoint {
        guard let port16 = UInt16(exactly: port) else {
            throw .invalidConfiguration("port must be in 0...65535 (got \(port))")
        }
        return .tcp(host: host, port: port16)
    }

    /// A Unix domain socket endpoint; the path must fit in `sun_path` (it
    /// is never truncated: a truncated path names another socket).
    static func unixSocket(_ path: String) throws(TobyError) -> Endpoint {
        let limit = toby_socket_unix_path_max()
        if path.utf8.count > limit {
            throw .unixPathTooLong(path: path, length: path.utf8.count, limit: limit)
        }
        if path.isEmpty { throw .invalidConfiguration("Unix socket path is empty") }
        return .unix(path: path)
    }

    /// The address as errors and `peer` show it: `host:port`, `[v6]:port`
    /// or `unix:PATH`.
    var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// The TCP port (0 for a Unix socket).
    var port: Int {
        if case .tcp(_, let port) = self { return Int(port) }
        return 0
    }

    /// The socket file's path, for a Unix socket.
    var unixPath: String? {
        if case .unix(let path) = self { return path }
        return nil
    }

    /// Binds and listens. Returns the (blocking) descriptor, which the
    /// caller owns, and the endpoint as bound (port 0 becomes the port the
    /// kernel chose).
    func listen(backlog: Int) throws(TobyError) -> (fd: Int32, bound: Endpoint) {
        var fd: Int32 = -1
        let backlog = Int32(clamping: backlog)
        switch self {
        case .tcp(let host, let port):
            var bound: UInt16 = 0
            var gaiError: Int32 = 0
            let rc = toby_socket_listen_tcp(host, port, backlog, &fd, &bound, &gaiError)
            if rc == TOBY_EINVAL { throw Endpoint.unresolvable(host, gaiError) }
            if rc != 0 { throw .systemAtAddress(operation: "bind/listen", address: description, errno: -rc) }
            return (fd, .tcp(host: host, port: bound))
        case .unix(let path):
            let rc = toby_socket_listen_unix(path, backlog, &fd)
            if rc != 0 { throw .systemAtAddress(operation: "bind/listen", address: description, errno: -rc) }
            return (fd, self)
        }
    }

    /// Connects, blocking the calling thread; returns the descriptor, which
    /// the caller owns.
    func connect() throws(TobyError) -> Int32 {
        var fd: Int32 = -1
        let rc: Int32
        switch self {
        case .tcp(let host, let port):
            var gaiError: Int32 = 0
            rc = toby_socket_connect_tcp(host, port, &fd, &gaiError)
            if rc == TOBY_EINVAL { throw Endpoint.unresolvable(host, gaiError) }
        case .unix(let path):
            rc = toby_socket_connect_unix(path, &fd)
        }
        if rc != 0 { throw .systemAtAddress(operation: "connect", address: description, errno: -rc) }
        return fd
    }

    /// The addresses a TCP host resolves to (at most 8), without blocking
    /// a pool thread: numeric addresses at once, names with getaddrinfo on
    /// a thread of their own.
    static func resolve(host: String, port: UInt16) async throws -> [toby_address] {
        if let addresses = try resolveNow(host: host, port: port, numericOnly: true) { return addresses }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[toby_address], any Error>) in
            do {
                try Threads.spawn(stackSize: 256 << 10) {
                    do {
                        continuation.resume(returning: try resolveNow(host: host, port: port, numericOnly: false)!)
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// nil when `numericOnly` and `host` is a name.
    private static func resolveNow(host: String, port: UInt16, numericOnly: Bool) throws -> [toby_address]? {
        var addresses = [toby_address](repeating: toby_address(), count: 8)
        var gaiError: Int32 = 0
        let count = addresses.withUnsafeMutableBufferPointer {
            toby_socket_resolve(host, port, numericOnly ? 1 : 0, $0.baseAddress, Int32($0.count), &gaiError)
        }
        if count > 0 { return Array(addresses[0..<Int(count)]) }
        if count == TOBY_EINVAL {
            if numericOnly && gaiError == EAI_NONAME { return nil }
            throw unresolvable(host, gaiError)
        }
        throw TobyError.system(operation: "getaddrinfo(\(host))", errno: -count)
    }

    private static func unresolvable(_ host: String, _ gaiError: Int32) -> TobyError {
        .unresolvableHost(host: host, reason: String(cString: gai_strerror(gaiError)))
    }
}
