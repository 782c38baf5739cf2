import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `toby bench`: it loads a real server in every mode and reports what it
/// measured, and it notices every way an echo can go wrong.
final class BenchToolTests: XCTestCase {
    private var processes: [ToolProcess] = []

    override func tearDown() {
        for process in processes { process.kill() }
        processes.removeAll()
        super.tearDown()
    }

    private func run(_ arguments: [String]) throws -> ToolResult {
        let process = try ToolProcess(arguments)
        processes.append(process)
        process.finishInput("")
        let stdout = try process.stdout.readToEnd()
        let stderr = try process.stderr.readToEnd()
        let (reason, status) = try process.waitForExit()
        return ToolResult(status: status, reason: reason, stdout: stdout, stderr: stderr)
    }

    private func echoServer(_ extra: [String] = []) throws -> String {
        let server = try ToolProcess(["echo", "--port", "0", "--grace", "0"] + extra)
        processes.append(server)
        return String(try server.listeningPort())
    }

    private func json(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try XCTUnwrap(object as? [String: Any], text)
    }

    private let short = ["--duration", "300ms", "--warmup", "100ms", "--quiet", "--json"]

    func testEveryModeAgainstEveryServerAPIReportsWhatItMeasured() throws {
        // Every server API with the client each mode defaults to; both clients against the handler server.
        let plans = [("handler", "async"), ("handler", "blocking"), ("async", nil), ("blocking", nil)]
        for (api, client) in plans {
            let port = try echoServer(["--api", api])
            for (mode, extra) in [
                ("pipeline", ["--connections", "3", "--in-flight", "8"]), ("ping-pong", ["--connections", "2"]),
                ("one-way", ["--size", "100K"]),
            ] {
                let clientArguments = client.map { ["--api", $0] } ?? []
                let result = try run(["bench", "--port", port, "--mode", mode] + extra + clientArguments + short)
                XCTAssertEqual(result.status, 0, "\(api) \(mode): \(result.stderr)")
                let summary = try json(result.stdout)
                XCTAssertEqual(summary["mode"] as? String, mode)
                XCTAssertEqual(summary["api"] as? String, client ?? (mode == "pipeline" ? "async" : "blocking"))
                let messages = try XCTUnwrap(summary["messages"] as? Int, "\(summary)")
                let replies = try XCTUnwrap(summary["replies"] as? Int, "\(summary)")
                XCTAssertGreaterThan(messages, 0, "\(api) \(mode)")
                let rate = try XCTUnwrap(summary["msgs_per_s"] as? Double)
                XCTAssertEqual(rate, Double(messages) / 0.3, accuracy: rate * 0.01, "\(api) \(mode)")
                if mode == "one-way" {
                    XCTAssertEqual(summary["replies_checked"] as? Bool, false)
                    XCTAssertNil(summary["p50_us"])
                } else {
                    // Warm-up and drain replies are checked too, but not measured.
                    XCTAssertGreaterThan(replies, messages, "\(api) \(mode)")
                    XCTAssertEqual(summary["replies_checked"] as? Bool, true)
                    let p50 = try XCTUnwrap(summary["p50_us"] as? Double)
                    let p99 = try XCTUnwrap(summary["p99_us"] as? Double)
                    XCTAssertGreaterThan(p50, 0)
                    XCTAssertLessThanOrEqual(p50, p99)
                }
            }
        }
    }

    func testTheTableAndTheProgressLine() throws {
        let port = try echoServer()
        let result = try run(["bench", "--port", port, "--duration", "1200ms", "--warmup", "0"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(
            result.stdout.hasPrefix("toby bench: pipeline, async client, 1 connection, 64 B messages, 64 in flight"),
            result.stdout)
        XCTAssertTrue(result.stdout.contains("  latency     p50 "), result.stdout)
        XCTAssertTrue(result.stdout.contains("replies, every byte as sent"), result.stdout)
        let progress = result.stderrLines.filter { $0.hasPrefix("toby: bench: ") }
        XCTAssertFalse(progress.isEmpty, result.stderr)
        XCTAssertTrue(progress.allSatisfy { $0.contains("msg/s") && $0.contains("MB/s") }, result.stderr)
    }

    func testBigEndianTalksToABigEndianServerAndTheWrongOrderFails() throws {
        let port = try echoServer(["--byte-order", "big"])
        let good = try run(["bench", "--port", port, "--byte-order", "big"] + short)
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertEqual(try json(good.stdout)["byte_order"] as? String, "big")
        // 64 little-endian is 2^62 big-endian: the server refuses the frame and closes.
        let bad = try run(["bench", "--port", port] + short)
        XCTAssertEqual(bad.status, 1, bad.stdout)
        XCTAssertTrue(bad.stderr.hasPrefix("toby: connection 1 (127.0.0.1:\(port)): "), bad.stderr)
    }

    func testACorruptedByteIsNamedAndExitsWithStatusOne() throws {
        for client in ["async", "blocking"] {
            let server = try FaultyEchoServer(.corrupt(message: 100, byte: 17))
            let result = try run(["bench", "--port", String(server.port), "--api", client] + short)
            XCTAssertEqual(result.status, 1, "\(client): \(result.stdout)")
            XCTAssertEqual(result.stdout, "")
            XCTAssertTrue(
                result.stderr.contains("message 100: byte 17 of the reply is "), "\(client): a byte named: \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(", the message sent had "), result.stderr)
        }
    }

    func testALostReplyIsCaughtAtTheNextOne() throws {
        for (mode, client) in [
            ("pipeline", "async"), ("pipeline", "blocking"), ("ping-pong", "async"), ("ping-pong", "blocking"),
        ] {
            let server = try FaultyEchoServer(.drop(message: 50))
            let result = try run(
                ["bench", "--port", String(server.port), "--mode", mode, "--api", client, "--timeout", "1s"] + short)
            XCTAssertEqual(result.status, 1, "\(mode): \(result.stdout)")
            // Pipelined, reply 51 arrives where 50 was due; ping-pong waits for 50 in vain.
            let expected =
                mode == "pipeline"
                ? "message 50: byte 0 of the reply is" : "no reply for 1.0 seconds: message 50 of 50 sent is unanswered"
            XCTAssertTrue(result.stderr.contains(expected), "\(mode): \(result.stderr)")
        }
    }

    func testACutReplyAndAServerThatEndsEarly() throws {
        let cut = try FaultyEchoServer(.shorten(message: 10))
        let cutResult = try run(["bench", "--port", String(cut.port)] + short)
        XCTAssertEqual(cutResult.status, 1)
        XCTAssertTrue(
            cutResult.stderr.contains("message 10: the reply is 63 bytes long, the message sent was 64"), cutResult.stderr)

        let early = try FaultyEchoServer(.close(after: 30))
        let earlyResult = try run(["bench", "--port", String(early.port), "--mode", "ping-pong"] + short)
        XCTAssertEqual(earlyResult.status, 1)
        XCTAssertTrue(earlyResult.stderr.contains("the server ended the connection after 30 of 31 replies"), earlyResult.stderr)
    }

    func testNonsenseIsRefusedBeforeConnecting() throws {
        for (arguments, message) in [
            (["--port", "0"], "--port 0 has no server to load"),
            (["--port", "1", "--connections", "0"], "--connections must be at least 1"),
            (["--port", "1", "--in-flight", "0"], "--in-flight must be at least 1"),
            (["--port", "1", "--size", "2M", "--max-frame", "1M"], "is more than --max-frame"),
            (["--port", "1", "--api", "blocking", "--threads", "2"], "--threads applies to --api async only"),
        ] {
            let result = try run(["bench"] + arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        }
    }
}

/// An echo server for one connection that goes wrong on purpose.
private final class FaultyEchoServer: @unchecked Sendable {
    enum Fault {
        /// Flips byte `byte` of the reply to message `message` (1-based).
        case corrupt(message: Int, byte: Int)
        /// Never answers message `message`.
        case drop(message: Int)
        /// Answers message `message` one byte short (the prefix says so).
        case shorten(message: Int)
        /// Closes the connection after answering `after` messages.
        case close(after: Int)
    }

    let port: Int
    private let listener: SilentListener
    private let done = DispatchSemaphore(value: 0)

    init(_ fault: Fault) throws {
        listener = try SilentListener()
        port = listener.port
        let fd = listener.fd
        Thread.detachNewThread { [done] in
            defer { done.signal() }
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return }
            let socket = RawSocket(accepted: connection)
            var k = 0
            while let header = try? socket.read(8) {
                let length = header.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
                guard length <= 1 << 20, var payload = try? socket.read(length) else { return }
                k += 1
                switch fault {
                case .corrupt(let message, let byte) where message == k: payload[byte] ^= 0x01
                case .drop(let message) where message == k: continue
                case .shorten(let message) where message == k: payload.removeLast()
                case .close(let after) where after + 1 == k: return
                default: break
                }
                guard (try? socket.write(prefix(UInt64(payload.count)) + payload)) != nil else { return }
            }
        }
    }

    /// Closing the listener ends an `accept` that never got its client;
    /// the connection's own end (the tool exits) ends the echo loop.
    deinit {
        shutdown(listener.fd, Int32(SHUT_RDWR))
        _ = done.wait(timeout: .now() + failsafeSeconds)
    }
}
