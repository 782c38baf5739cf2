import CTobyFrame
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// `TobyServer.statistics()` adds up: what clients sent and got back, and
/// what bad peers and back-pressure did, for the handler and the async API.
final class ServerStatisticsTests: XCTestCase {
    /// Waits until `count` connections were accepted and have ended (the
    /// count of open connections alone can be 0 before the loop accepted a
    /// connection whose handshake the kernel already completed).
    private func waitForEnded(_ count: Int, _ server: TobyServer) {
        XCTAssertTrue(
            ServerEvents().wait { server.statistics().connectionsClosed >= count && server.connectionCount == 0 },
            "every connection ended")
    }

    func testEchoedTrafficAddsUpOnEveryAPI() throws {
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        for api in ["handler", "async"] {
            let server =
                api == "handler"
                ? try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
                : try TobyServer.serve(port: 0, group: group) { connection in
                    for try await batch in connection.batches { try await connection.send(contentsOf: batch) }
                }
            let clients = 4
            let perClient = 1000
            let sizes = (0..<perClient).map { $0 % 300 }
            let wire = sizes.reduce(0) { $0 + 8 + $1 }
            for client in 0..<clients {
                let peer = try connectRaw(port: server.port)
                peer.setReceiveTimeout(seconds: 10)
                peer.write(
                    sizes.enumerated().flatMap { frame(pattern($0.element, seed: UInt64(client * perClient + $0.offset))) })
                for (index, size) in sizes.enumerated() {
                    XCTAssertEqual(peer.readFrame(), pattern(size, seed: UInt64(client * perClient + index)))
                }
                peer.shutdownWrite()
                XCTAssertNil(peer.readFrame())
            }
            waitForEnded(clients, server)
            let stats = server.statistics()
            XCTAssertEqual(stats.connectionsAccepted, clients, api)
            XCTAssertEqual(stats.connectionsClosed, clients, api)
            XCTAssertEqual(stats.connectionsOpen, 0, api)
            XCTAssertEqual(stats.messagesReceived, clients * perClient, "\(api): messages in")
            XCTAssertEqual(stats.messagesSent, clients * perClient, "\(api): messages echoed")
            XCTAssertEqual(stats.bytesReceived, clients * wire, "\(api): every byte the clients sent")
            XCTAssertEqual(stats.bytesSent, clients * wire, "\(api): every byte echoed")
            XCTAssertEqual(stats.framesTooLarge + stats.framesTruncated + stats.resets + stats.readTimeouts, 0, api)
            XCTAssertTrue(stats.description.contains("in 4000 messages"), stats.description)
            server.close(gracePeriod: .zero)
        }
    }

    /// Frames larger than the ring are read straight into their own
    /// storage, partly from what the ring already held and with a little
    /// read ahead into it: every byte is still counted once.
    func testLargeFramesCountEveryByteOnce() throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        for api in ["handler", "async"] {
            let server =
                api == "handler"
                ? try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
                : try TobyServer.serve(port: 0, group: group) { connection in
                    for try await batch in connection.batches { try await connection.send(contentsOf: batch) }
                }
            let sizes = [1 << 20, 3, 200_000, 70_000, 0, 65_529, 65_536, 5, 300_001]
            let peer = try connectRaw(port: server.port)
            peer.setReceiveTimeout(seconds: 10)
            for (index, size) in sizes.enumerated() {
                // A small frame rides behind each, so a direct read finds
                // ring bytes before it and reads ahead after it.
                peer.write(frame(pattern(size, seed: UInt64(index))) + frame([7, 7]))
                XCTAssertEqual(peer.readFrame(), pattern(size, seed: UInt64(index)), "\(api) frame \(index)")
                XCTAssertEqual(peer.readFrame(), [7, 7], "\(api) behind frame \(index)")
            }
            peer.shutdownWrite()
            XCTAssertNil(peer.readFrame())
            waitForEnded(1, server)
            let wire = sizes.reduce(0) { $0 + 8 + $1 + 10 }
            let stats = server.statistics()
            XCTAssertEqual(stats.messagesReceived, sizes.count * 2, api)
            XCTAssertEqual(stats.bytesReceived, wire, "\(api): every byte received counted once")
            XCTAssertEqual(stats.bytesSent, wire, "\(api): every byte echoed")
            server.close(gracePeriod: .zero)
        }
    }

    func testBadPeersAreCountedByKind() throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        var configuration = TobyConfiguration()
        configuration.maxFrameLength = 1000
        configuration.readTimeout = .milliseconds(200)
        let server = try TobyServer.listen(port: 0, configuration: configuration, group: group) { _ in EchoHandler() }
        defer { server.close(gracePeriod: .zero) }

        let tooLarge = try connectRaw(port: server.port)
        tooLarge.write(TobyProtocol.prefix(length: 5000))
        let truncated = try connectRaw(port: server.port)
        truncated.write(Array(frame([1, 2, 3, 4]).prefix(10)))
        truncated.shutdownWrite()
        let reset = try connectRaw(port: server.port)
        reset.write(frame([9]))
        XCTAssertEqual(reset.readFrame(), [9])
        reset.reset()
        let silent = try connectRaw(port: server.port)  // sends nothing: the read timeout ends it
        _ = silent
        waitForEnded(4, server)
        let stats = server.statistics()
        XCTAssertEqual(stats.connectionsAccepted, 4)
        XCTAssertEqual(stats.framesTooLarge, 1, stats.description)
        XCTAssertEqual(stats.framesTruncated, 1, stats.description)
        XCTAssertEqual(stats.resets, 1, stats.description)
        XCTAssertEqual(stats.readTimeouts, 1, stats.description)
        XCTAssertEqual(stats.messagesReceived, 1)
    }

    func testBackPressureEpisodesAreCounted() throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let server = try TobyServer.listen(
            port: 0, options: .init(writeHighWaterMark: 64 << 10, writeLowWaterMark: 16 << 10), group: group
        ) { _ in EchoHandler() }
        defer { server.close(gracePeriod: .zero) }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        let payload = [UInt8](repeating: 5, count: 60_000)
        let count = 200  // 12 MB: far more than the socket buffers hold
        let writer = Thread { for _ in 0..<count { peer.write(frame(payload)) } }
        writer.start()
        XCTAssertTrue(ServerEvents().wait { server.statistics().readPauses > 0 }, "the unread echoes paused reading")
        for _ in 0..<count { XCTAssertEqual(peer.readFrame()?.count, payload.count) }
        XCTAssertEqual(server.statistics().messagesReceived, count, "nothing lost to back-pressure")
    }

    func testEachConnectionHasItsOwnFigures() throws {
        final class Seen: @unchecked Sendable {
            let lock = ConditionLock()
            var figures: TobyConnection.Statistics?  // guarded by lock
        }
        let seen = Seen()
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let server = try TobyServer.serve(port: 0, group: group) { connection in
            var taken = 0
            for try await batch in connection.batches {
                try await connection.send(contentsOf: batch)
                taken += batch.count
                if taken == 10 { break }
            }
            try await connection.flush()
            let figures = try await connection.statistics()
            seen.lock.withLock {
                seen.figures = figures
                seen.lock.broadcast()
            }
        }
        defer { server.close(gracePeriod: .zero) }
        let started = ContinuousClock.now
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        peer.write((0..<10).flatMap { _ in frame([1, 2, 3, 4, 5]) })
        for _ in 0..<10 { XCTAssertEqual(peer.readFrame(), [1, 2, 3, 4, 5]) }
        XCTAssertTrue(ServerEvents().wait { seen.lock.withLock { seen.figures != nil } }, "the task read its figures")
        let figures = try XCTUnwrap(seen.lock.withLock { seen.figures })
        XCTAssertEqual(figures.messagesReceived, 10)
        XCTAssertEqual(figures.messagesSent, 10)
        XCTAssertEqual(figures.bytesReceived, 130)
        XCTAssertEqual(figures.bytesSent, 130)
        XCTAssertEqual(figures.queuedBytes, 0, "flushed")
        XCTAssertGreaterThanOrEqual(figures.openedAt, started)
    }
}
