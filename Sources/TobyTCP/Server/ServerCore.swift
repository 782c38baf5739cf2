import CTobyFrame
import Glibc

/// What the loops share about one server: its listener, settings, handler
/// factory and live-connection count.
final class ServerCore: @unchecked Sendable {
    private static let ids = ConditionLock()
    nonisolated(unsafe) private static var nextID = 1  // guarded by ids

    let id: Int
    let listenFD: Int32
    let configuration: TobyConfiguration
    let options: TobyServer.Options
    let makeHandler: @Sendable (TobyConnection) -> any TobyServerHandler
    let isUnix: Bool
    let unixPath: String?

    let lock = ConditionLock()
    // Guarded by lock.
    private var live = 0
    private var opened = 0
    private var acceptFailures = 0
    private var lastAcceptError: TobyError?

    /// The server's address as text (empty for a client's connection).
    let address: String

    init(
        listenFD: Int32, unixPath: String?, address: String = "", configuration: TobyConfiguration,
        options: TobyServer.Options, makeHandler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) {
        self.address = address
        id = ServerCore.reserveID()
        self.listenFD = listenFD
        self.unixPath = unixPath
        self.isUnix = unixPath != nil
        self.configuration = configuration
        self.options = options
        self.makeHandler = makeHandler
    }

    /// A new server id: the high bits of every connection id it hands out.
    static func reserveID() -> Int {
        ids.withLock {
            let id = nextID
            nextID += 1
            return id
        }
    }

    /// An id, unique in the process, for a blocking connection this process
    /// opened (an id of its own, as if it were a server with one connection).
    static func clientConnectionID() -> UInt64 {
        UInt64(reserveID()) << 40 | 1
    }

    func describePeer(_ text: String) -> String {
        guard let unixPath else { return text }
        return text == "unix" ? "unix:\(unixPath)" : "unix:\(unixPath) (\(text))"
    }

    /// Counts a new connection; returns its id, unique in the process
    /// (this server's id, then a count).
    func connectionOpened() -> UInt64 {
        lock.withLock {
            live += 1
            opened += 1
            return UInt64(id) << 40 | UInt64(opened)
        }
    }

    func connectionClosed() {
        lock.withLock {
            live -= 1
            if live == 0 { lock.broadcast() }
        }
    }

    func noteAcceptFailure(_ error: TobyError) {
        lock.withLock {
            acceptFailures += 1
            lastAcceptError = error
        }
        options.observer?.acceptFailed(server: address, error: error)
    }

    var liveConnections: Int { lock.withLock { live } }

    var acceptFailureCount: Int { lock.withLock { acceptFailures } }

    var lastAcceptFailure: TobyError? { lock.withLock { lastAcceptError } }

    /// Waits until no connection is left or `deadline` (monotonic ns) passes.
    func waitForNoConnections(until deadline: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        while live > 0 {
            if monotonicNanoseconds() >= deadline { return false }
            _ = lock.wait(untilMonotonicNanoseconds: min(deadline, monotonicNanoseconds() + 50_000_000))
        }
        return true
    }
}
