import XCTest

@testable import TobyTCP

/// One back-pressure value, `TobyBackPressure`, for servers and async
/// clients: a client's own marks decide when its sends wait.
final class BackPressureConfigurationTests: XCTestCase {
    /// Sends 16 KiB messages to a peer that never reads until a send times
    /// out waiting for room; returns the bytes queued (past the kernel's
    /// buffers) at that moment.
    private func queuedWhenSendsWait(_ backPressure: TobyBackPressure?) async throws -> Int {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let configuration = try TobyConfiguration(writeTimeout: .milliseconds(300))
        let client: TobyAsyncConnection
        if let backPressure {
            client = try await TobyAsyncConnection.connect(
                host: "127.0.0.1", port: listener.port, configuration: configuration, group: group,
                backPressure: backPressure)
        } else {
            client = try await TobyAsyncConnection.connect(
                host: "127.0.0.1", port: listener.port, configuration: configuration, group: group)
        }
        let peer = try listener.accept()  // never reads
        defer { peer.shutdown(linger: .zero) }
        let message = [UInt8](repeating: 7, count: 16 << 10)
        for _ in 0..<100_000 {
            do {
                try await client.send(message)
            } catch TobyError.writeTimedOut {
                let queued = try await client.onLoop { client.core.queuedBytes }
                client.abort()
                return queued
            }
        }
        XCTFail("no send ever waited")
        return 0
    }

    func testAnAsyncClientsOwnMarksDecideWhenItsSendsWait() async throws {
        let small = TobyBackPressure(highWaterMark: 64 << 10, lowWaterMark: 16 << 10)
        let queued = try await queuedWhenSendsWait(small)
        // The send that waited found the queue at or above 64 KiB; the one
        // before it, accepted below the mark, added at most one message.
        XCTAssertGreaterThanOrEqual(queued, 64 << 10)
        XCTAssertLessThan(queued, (64 << 10) + (16 << 10) + 8)
        let byDefault = try await queuedWhenSendsWait(nil)
        XCTAssertGreaterThanOrEqual(byDefault, TobyBackPressure().highWaterMark, "the default is 1 MiB")
    }

    func testTheServerOptionsNamesAreTheSameValue() throws {
        var options = TobyServer.Options(writeHighWaterMark: 1000, writeLowWaterMark: 10)
        XCTAssertEqual(options.backPressure, TobyBackPressure(highWaterMark: 1000, lowWaterMark: 10))
        options.backPressure.lowWaterMark = 20
        XCTAssertEqual(options.writeLowWaterMark, 20)
        options.writeHighWaterMark = 2000
        XCTAssertEqual(options.backPressure.highWaterMark, 2000)
    }

    func testBadMarksAreRefusedOnBothAPIs() async throws {
        let bad = TobyBackPressure(highWaterMark: 10, lowWaterMark: 10)
        var options = TobyServer.Options()
        options.backPressure = bad
        XCTAssertThrowsError(try TobyServer.listen(port: 0, options: options) { _ in EchoHandler() }) { error in
            XCTAssertEqual(
                error as? TobyError,
                .invalidConfiguration("the write low-water mark must be in 0..<high-water mark (got 10, high 10)"))
        }
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        do {
            _ = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: 1, group: group, backPressure: bad)
            XCTFail("bad marks must be refused before connecting")
        } catch let error as TobyError {
            XCTAssertEqual(
                error, .invalidConfiguration("the write low-water mark must be in 0..<high-water mark (got 10, high 10)"))
        }
    }
}
