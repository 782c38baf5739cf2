import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `toby echo --stats INTERVAL`: a line of the server's statistics on stderr
/// every interval, with the traffic it carried.
final class StatsToolTests: XCTestCase {
    func testStatsLinesCountTheTrafficOnTheLoopAPIs() throws {
        for api in ["handler", "async"] {
            let server = try ToolProcess(["echo", "--port", "0", "--api", api, "--stats", "100ms", "--grace", "0"])
            addTeardownBlock { server.kill() }
            let socket = try RawSocket(port: try server.listeningPort())
            let payload = Array("toby is a good dog".utf8)
            for _ in 0..<50 { try socket.write(prefix(UInt64(payload.count)) + payload) }
            for _ in 0..<50 { XCTAssertEqual(try socket.read(8 + payload.count), prefix(UInt64(payload.count)) + payload) }
            // Lines report rates per interval: find the one that saw the 50 messages.
            var sawTraffic = false
            var lines: [String] = []
            while !sawTraffic, lines.count < 100, let line = try server.stderr.readLine() {
                lines.append(line)
                XCTAssertTrue(line.hasPrefix("toby: stats: "), "\(api): \(line)")
                XCTAssertTrue(line.contains("1 connections"), "\(api): \(line)")
                sawTraffic = !line.contains("in 0 msg/s") && line.contains("errors 0")
            }
            XCTAssertTrue(sawTraffic, "\(api): a line saw the traffic: \(lines.suffix(3))")
            server.signal(SIGTERM)
            XCTAssertEqual(try server.waitForExit().status, 0)
        }
    }

    func testStatsIsRefusedForTheBlockingAPI() throws {
        let process = try ToolProcess(["echo", "--port", "0", "--api", "blocking", "--stats", "1s"])
        addTeardownBlock { process.kill() }
        let stderr = try process.stderr.readToEnd()
        XCTAssertNotEqual(try process.waitForExit().status, 0)
        XCTAssertTrue(stderr.contains("--stats applies to --api handler and async"), stderr)
    }
}
