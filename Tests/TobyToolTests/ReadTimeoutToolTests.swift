import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 15, defect 5: `toby echo --read-timeout` drops a connection that
/// completes no message in time (a slow-loris peer), with one stderr line,
/// on every `--api`, while a connection that keeps completing messages is
/// served; `toby listen` takes the option too.
final class ReadTimeoutToolTests: XCTestCase {
    private var processes: [ToolProcess] = []

    override func tearDown() {
        for process in processes { process.kill() }
        processes.removeAll()
        super.tearDown()
    }

    private func start(_ arguments: [String]) throws -> ToolProcess {
        let process = try ToolProcess(arguments)
        processes.append(process)
        return process
    }

    /// The timeout of these tests: long against the steady client's 100 ms
    /// between messages, short for the test's run time.
    private static let timeout = 0.8

    func testSlowLorisIsDroppedAndASteadyClientServedOnEveryAPI() throws {
        for api in ["handler", "async", "blocking"] {
            let server = try start(["echo", "--port", "0", "--api", api, "--read-timeout", "800ms"])
            let port = try server.listeningPort()
            let loris = try RawSocket(port: port)
            let steady = try RawSocket(port: port)
            let started = Date()
            try loris.write([5])  // the first byte of a prefix, then nothing

            // The steady client completes a message every 100 ms, for longer
            // than the timeout; the wait between its messages is a poll of
            // the slow-loris socket, which notes when the server drops it.
            var lorisDroppedAfter: Double?
            var round = 0
            while Date().timeIntervalSince(started) < 10 {
                let payload = Array("round \(round)".utf8)
                try steady.write(prefix(UInt64(payload.count)) + payload)
                XCTAssertEqual(
                    try steady.read(8 + payload.count), prefix(UInt64(payload.count)) + payload, "\(api) round \(round)")
                round += 1
                if lorisDroppedAfter == nil {
                    if loris.isReadable(within: 100) { lorisDroppedAfter = Date().timeIntervalSince(started) }
                } else {
                    // Pacing the steady client (nothing to wait for).
                    usleep(100_000)
                }
                let servedLongEnough = Date().timeIntervalSince(started) > 2 * Self.timeout
                if lorisDroppedAfter != nil && servedLongEnough { break }
            }
            let dropped = try XCTUnwrap(lorisDroppedAfter, "\(api): the slow-loris connection is still open after 10 s")
            XCTAssertNil(try loris.read(1), "\(api): the server ended the slow-loris connection")
            XCTAssertGreaterThanOrEqual(dropped, Self.timeout - 0.1, "\(api): dropped before the timeout")
            XCTAssertGreaterThan(round, 8, "\(api): the steady client made its round trips")
            XCTAssertGreaterThan(Date().timeIntervalSince(started), 2 * Self.timeout)

            // The steady connection is still served, then ends cleanly.
            try steady.write(prefix(4) + Array("last".utf8))
            XCTAssertEqual(try steady.read(12), prefix(4) + Array("last".utf8), api)
            steady.shutdownWrite()
            XCTAssertNil(try steady.read(1), "\(api): the server ends the stream after the client's end")

            // Exactly one line, about the slow-loris peer.
            let line = try XCTUnwrap(try server.stderr.readLine(timeout: 10), "\(api): no line on stderr")
            XCTAssertTrue(line.hasPrefix("toby: 127.0.0.1:\(loris.localPort): timed out"), "\(api): \(line)")
            XCTAssertTrue(line.contains("--read-timeout"), "\(api): \(line)")
            server.signal(SIGTERM)
            let rest = try server.stderr.readToEnd()
            XCTAssertEqual(rest, "", "\(api): one line only")
            XCTAssertEqual(try server.waitForExit().status, 0, api)
        }
    }

    func testListenDropsASilentPeer() throws {
        let listener = try start(["listen", "--port", "0", "--read-timeout", "0.3s"])
        let port = try listener.listeningPort()
        let peer = try RawSocket(port: port)
        try peer.write(prefix(2) + Array("hi".utf8) + [9])  // a message, then one byte
        XCTAssertEqual(try listener.stdout.readLine(), "127.0.0.1:\(peer.localPort): hi")
        XCTAssertNil(try peer.read(1), "the listener ended the connection")
        let line = try XCTUnwrap(try listener.stderr.readLine(timeout: 10))
        XCTAssertTrue(line.hasPrefix("toby: 127.0.0.1:\(peer.localPort): timed out"), line)
        listener.signal(SIGTERM)
        XCTAssertEqual(try listener.stderr.readToEnd(), "")
        XCTAssertEqual(try listener.waitForExit().status, 0)
    }

    func testABadDurationIsRefused() throws {
        let process = try start(["echo", "--port", "0", "--read-timeout", "5"])
        let stderr = try process.stderr.readToEnd()
        XCTAssertNotEqual(try process.waitForExit().status, 0)
        XCTAssertTrue(stderr.contains("'5' has no unit: write 5s for seconds or 5ms for milliseconds"), stderr)
    }
}
