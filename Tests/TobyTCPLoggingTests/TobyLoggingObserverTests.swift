import CTobyFrame
import Logging
import XCTest

@testable import TobyTCP
@testable import TobyTCPLogging

#if canImport(Glibc)
import Glibc
#endif

/// A LogHandler that keeps every entry, for the tests to read.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    struct Entry {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    private let lock = ConditionLock()
    private var recorded: [Entry] = []  // guarded by lock
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.withLock {
            recorded.append(Entry(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:]))
            lock.broadcast()
        }
    }

    var entries: [Entry] { lock.withLock { recorded } }

    /// Waits (at most 10 s) until `count` entries were logged.
    func wait(for count: Int) -> Bool {
        let deadline = monotonicNanoseconds() + 10_000_000_000
        return lock.withLock {
            while recorded.count < count {
                if monotonicNanoseconds() >= deadline { return false }
                _ = lock.wait(untilMonotonicNanoseconds: min(deadline, monotonicNanoseconds() + 20_000_000))
            }
            return true
        }
    }
}

private struct Echo: TobyServerHandler {
    func received(_ messages: TobyMessages, on connection: TobyConnection) {
        try? connection.send(contentsOf: messages)
    }
}

final class TobyLoggingObserverTests: XCTestCase {
    private func server(_ handler: RecordingLogHandler, level: Logger.Level = .trace) throws -> TobyServer {
        var logger = Logger(label: "toby-test") { _ in handler }
        logger.logLevel = level
        var options = TobyServer.Options()
        options.observer = TobyLoggingObserver(logger: logger)
        let server = try TobyServer.listen(port: 0, options: options) { _ in Echo() }
        addTeardownBlock { server.close(gracePeriod: .zero) }
        return server
    }

    private func connect(_ port: Int) throws -> Int32 {
        var fd: Int32 = -1
        XCTAssertEqual(toby_socket_connect_tcp("127.0.0.1", UInt16(port), &fd, nil), 0)
        return fd
    }

    func testConnectionEventsAtTraceWithTheirMetadata() throws {
        let handler = RecordingLogHandler()
        let server = try server(handler)
        let fd = try connect(server.port)
        let frame = TobyProtocol.encode(Array("toby".utf8))
        XCTAssertEqual(send(fd, frame, frame.count, Int32(MSG_NOSIGNAL)), frame.count)
        var reply = [UInt8](repeating: 0, count: frame.count)
        XCTAssertEqual(recv(fd, &reply, reply.count, Int32(MSG_WAITALL)), frame.count)
        shutdown(fd, Int32(SHUT_WR))
        XCTAssertEqual(recv(fd, &reply, 1, 0), 0, "the server ends too")
        close(fd)
        XCTAssertTrue(handler.wait(for: 2))
        let entries = handler.entries
        XCTAssertEqual(entries.map(\.message), ["connection opened", "connection closed"])
        XCTAssertEqual(entries.map(\.level), [.trace, .trace])
        for entry in entries {
            XCTAssertEqual(entry.metadata["server.address"], "\(server.address)")
            XCTAssertNotNil(entry.metadata["network.peer.address"])
            XCTAssertNotNil(entry.metadata["toby.connection.id"])
        }
        XCTAssertEqual(entries[0].metadata["toby.connection.id"], entries[1].metadata["toby.connection.id"])
        XCTAssertEqual(entries[1].metadata["toby.messages.received"], "1")
        XCTAssertEqual(entries[1].metadata["toby.messages.sent"], "1")
        XCTAssertEqual(entries[1].metadata["toby.bytes.received"], "\(frame.count)")
        XCTAssertEqual(entries[1].metadata["toby.bytes.sent"], "\(frame.count)")
    }

    func testABadPeerIsLoggedAtDebugAndNothingBelowInfoReachesAnInfoLogger() throws {
        let handler = RecordingLogHandler()
        let server = try server(handler)
        let fd = try connect(server.port)
        let prefix = TobyProtocol.prefix(length: 1 << 40)
        XCTAssertEqual(send(fd, prefix, prefix.count, Int32(MSG_NOSIGNAL)), prefix.count)
        XCTAssertTrue(handler.wait(for: 2))
        close(fd)
        let ended = handler.entries[1]
        XCTAssertEqual(ended.level, .debug)
        XCTAssertTrue(ended.message.hasPrefix("connection ended: frame too large"), ended.message)
        XCTAssertEqual(ended.metadata["error.type"], "frameTooLarge")

        // At .info, connection events cost a level check and log nothing.
        let quiet = RecordingLogHandler()
        let infoServer = try self.server(quiet, level: .info)
        let other = try connect(infoServer.port)
        close(other)
        XCTAssertTrue(ServerEventsWait.until { infoServer.statistics().connectionsClosed == 1 })
        XCTAssertTrue(quiet.entries.isEmpty, "\(quiet.entries.map(\.message))")
    }

    func testAcceptFailuresAreWarnings() throws {
        let handler = RecordingLogHandler()
        let server = try server(handler)
        server.core.noteAcceptFailure(.outOfDescriptors(address: server.address, errno: EMFILE))
        XCTAssertEqual(handler.entries.map(\.level), [.warning])
        XCTAssertTrue(handler.entries[0].message.hasPrefix("accept failed: 'accept' on"), handler.entries[0].message)
        XCTAssertEqual(handler.entries[0].metadata["error.type"], "outOfDescriptors")
    }
}

/// Connects are logged too: the blocking messenger's and the async API's.
final class TobyLoggingConnectTests: XCTestCase {
    private func observer(_ handler: RecordingLogHandler) -> TobyLoggingObserver {
        var logger = Logger(label: "toby-test") { _ in handler }
        logger.logLevel = .trace
        return TobyLoggingObserver(logger: logger)
    }

    func testBlockingConnectsAreLoggedWithTheirAddress() throws {
        let handler = RecordingLogHandler()
        let logging = observer(handler)
        let listener = try TobyListener(host: "127.0.0.1", port: 0)
        let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port, observer: logging)
        XCTAssertEqual(handler.entries.map(\.message), ["connected"])
        XCTAssertEqual(handler.entries[0].level, .trace)
        XCTAssertEqual(handler.entries[0].metadata["network.peer.address"], "127.0.0.1:\(listener.port)")
        XCTAssertNil(handler.entries[0].metadata["server.address"], "a connection this process opened")
        let id = try XCTUnwrap(handler.entries[0].metadata["toby.connection.id"])
        try messenger.close()

        // A second connect gets an id of its own; a refused one is logged at debug.
        let other = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port, observer: logging)
        XCTAssertNotEqual(handler.entries[1].metadata["toby.connection.id"], id)
        try other.close()
        let port = listener.port
        listener.close()
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port, observer: logging))
        XCTAssertEqual(handler.entries.count, 3)
        XCTAssertEqual(handler.entries[2].level, .debug)
        XCTAssertTrue(
            handler.entries[2].message.hasPrefix("connect failed: 'connect' to 127.0.0.1:\(port) failed"),
            handler.entries[2].message)
        XCTAssertEqual(handler.entries[2].metadata["error.type"], "systemAtAddress")
        XCTAssertEqual(handler.entries[2].metadata["network.peer.address"], "127.0.0.1:\(port)")
        let path = "/tmp/toby-logging-\(getpid())-absent.sock"
        XCTAssertThrowsError(try TobyMessenger.connect(unixPath: path, observer: logging))
        XCTAssertEqual(handler.entries.last?.metadata["network.peer.address"], "unix:\(path)")
    }

    func testAsyncConnectsLogTheirOpenFailureAndEnd() async throws {
        let handler = RecordingLogHandler()
        let logging = observer(handler)
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let server = try TobyServer.listen(port: 0, group: group) { _ in Echo() }
        let connection = try await TobyAsyncConnection.connect(
            host: "127.0.0.1", port: server.port, group: group, observer: logging)
        XCTAssertTrue(handler.wait(for: 1))
        XCTAssertEqual(handler.entries[0].message, "connected")
        XCTAssertEqual(handler.entries[0].metadata["network.peer.address"], "127.0.0.1:\(server.port)")
        try await connection.send(Array("toby".utf8))
        var inbound = connection.messages.makeAsyncIterator()
        let echoed = try await inbound.next()
        XCTAssertEqual(echoed.map(Array.init), Array("toby".utf8))
        try await connection.close()
        server.close(gracePeriod: .zero)
        while try await inbound.next() != nil {}
        XCTAssertTrue(handler.wait(for: 2), "\(handler.entries.map(\.message))")
        let end = handler.entries[1]
        XCTAssertEqual(end.level, .trace, end.message)
        XCTAssertEqual(end.message, "connection closed")
        XCTAssertEqual(end.metadata["toby.messages.sent"], "1")
        XCTAssertEqual(end.metadata["toby.messages.received"], "1")
        XCTAssertEqual(end.metadata["toby.connection.id"], handler.entries[0].metadata["toby.connection.id"])

        let port = server.port
        do {
            _ = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group, observer: logging)
            XCTFail("connected to a closed server")
        } catch {}
        XCTAssertEqual(handler.entries.count, 3)
        XCTAssertEqual(handler.entries[2].level, .debug)
        XCTAssertTrue(handler.entries[2].message.hasPrefix("connect failed: "), handler.entries[2].message)
    }
}

/// Polls a condition the code under test reaches (no sleep as synchronisation).
enum ServerEventsWait {
    static func until(_ condition: () -> Bool) -> Bool {
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while !condition() {
            if monotonicNanoseconds() >= deadline { return false }
            usleep(1000)
        }
        return true
    }
}
