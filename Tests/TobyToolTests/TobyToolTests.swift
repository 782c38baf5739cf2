import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Runs the `toby` binary as a subprocess. Servers are started with
/// `--port 0` (or a Unix socket in a temporary directory) and are waited for
/// by reading their `listening on` line; nothing sleeps.
final class TobyToolTests: XCTestCase {
    private var processes: [ToolProcess] = []
    private var temporaryDirectories: [String] = []

    override func tearDown() {
        for process in processes { process.kill() }
        processes.removeAll()
        for directory in temporaryDirectories { try? FileManager.default.removeItem(atPath: directory) }
        temporaryDirectories.removeAll()
        super.tearDown()
    }

    /// Starts a long-running `toby` (a server), killed in tearDown.
    private func start(_ arguments: [String]) throws -> ToolProcess {
        let process = try ToolProcess(arguments)
        processes.append(process)
        return process
    }

    /// Runs `toby` to completion with `input` on stdin.
    private func run(_ arguments: [String], input: String = "") throws -> ToolResult {
        let process = try start(arguments)
        process.finishInput(input)
        let stdout = try process.stdout.readToEnd()
        let stderr = try process.stderr.readToEnd()
        let (reason, status) = try process.waitForExit()
        return ToolResult(status: status, reason: reason, stdout: stdout, stderr: stderr)
    }

    /// An echo server on a free port; returns it and its port.
    private func echoServer(_ extra: [String] = []) throws -> (ToolProcess, String) {
        let server = try start(["echo", "--port", "0"] + extra)
        return (server, String(try server.listeningPort()))
    }

    /// A short temporary directory (Unix socket paths are limited to ~107 bytes).
    private func temporaryDirectory() throws -> String {
        var template = Array("/tmp/toby-test-XXXXXX".utf8CString)
        guard let path = mkdtemp(&template) else { throw ToolTestError("mkdtemp: errno \(errno)") }
        let directory = String(cString: path)
        temporaryDirectories.append(directory)
        return directory
    }

    // MARK: echo + send

    func testEchoRepliesInOrder() throws {
        let (_, port) = try echoServer()
        let result = try run(["send", "--port", port, "--replies", "2", "a", "b"])
        XCTAssertEqual(result.stdout, "a\nb\n")
        XCTAssertEqual(result.stderr, "")
        XCTAssertEqual(result.status, 0)
    }

    func testStdinLinesPipelinedAndLargerThanTheRingComeBackInOrder() throws {
        let (_, port) = try echoServer()
        var lines = (0..<3000).map { "message \($0)" }
        lines.insert(String(repeating: "x", count: 200_000), at: 1500)  // > 64 KiB ring
        lines.insert("", at: 10)  // an empty message
        let input = lines.joined(separator: "\n") + "\n"
        let result = try run(["send", "--port", port, "--replies", String(lines.count)], input: input)
        XCTAssertEqual(result.stderr, "")
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout == input, "replies differ from what was sent")
    }

    /// Every server API echoes the same pipelined stream, in order, with an
    /// empty message and one larger than the ring; the bad flag is refused.
    func testEveryServerAPIEchoes() throws {
        var lines = (0..<2000).map { "message \($0)" }
        lines.insert(String(repeating: "y", count: 100_000), at: 700)
        lines.insert("", at: 5)
        let input = lines.joined(separator: "\n") + "\n"
        for api in ["handler", "async", "blocking"] {
            let (server, port) = try echoServer(["--api", api])
            let result = try run(["send", "--port", port, "--replies", String(lines.count)], input: input)
            XCTAssertEqual(result.stderr, "", api)
            XCTAssertEqual(result.status, 0, api)
            XCTAssertTrue(result.stdout == input, "\(api): replies differ from what was sent")
            server.signal(SIGTERM)
            XCTAssertEqual(try server.waitForExit().status, 0, api)
        }
        let bad = try run(["echo", "--port", "0", "--api", "blocking", "--threads", "2"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--threads"), bad.stderr)
    }

    func testManyClientsAtOnce() throws {
        let (server, port) = try echoServer(["--grace", "0"])
        // A connection that stays open and idle does not hold the others up.
        let idle = try RawSocket(port: Int(port)!)
        let clients = try (0..<6).map { client in
            try start(["send", "--port", port, "--replies", "3"] + (0..<3).map { "c\(client)-\($0)" })
        }
        for (client, process) in clients.enumerated() {
            process.finishInput("")
            XCTAssertEqual(try process.stdout.readToEnd(), "c\(client)-0\nc\(client)-1\nc\(client)-2\n")
            XCTAssertEqual(try process.waitForExit().status, 0)
        }
        try idle.write(prefix(4) + Array("idle".utf8))
        XCTAssertEqual(try idle.read(12), prefix(4) + Array("idle".utf8))
        server.signal(SIGTERM)
        XCTAssertEqual(try server.waitForExit().status, 0)
    }

    func testHexRoundTrip() throws {
        let (_, port) = try echoServer()
        let result = try run(["send", "--port", port, "--hex", "--replies", "3", "00ff10", "0x6869", ""])
        XCTAssertEqual(result.stdout, "00ff10\n6869\n\n")
        XCTAssertEqual(result.status, 0)

        let fromStdin = try run(["send", "--port", port, "--hex", "--replies", "1"], input: "de ad be ef\n")
        XCTAssertEqual(fromStdin.stdout, "deadbeef\n")

        let invalid = try run(["send", "--port", port, "--hex", "xyz"])
        XCTAssertNotEqual(invalid.status, 0)
        XCTAssertTrue(invalid.stderr.contains("not hex"), invalid.stderr)
    }

    func testNonPrintableRepliesArePrintedAsHex() throws {
        let (_, port) = try echoServer()
        let result = try run(["send", "--port", port, "--replies", "3", "bell\u{07}", "tab\there", "héllo"])
        XCTAssertEqual(result.stdout, "0x62656c6c07\ntab\there\nhéllo\n")
    }

    // MARK: listen

    func testListenPrintsMessagesWithThePeerAddress() throws {
        let listener = try start(["listen", "--port", "0"])
        let port = String(try listener.listeningPort())
        let sent = try run(["send", "--port", port, "hello", "wörld"])
        XCTAssertEqual(sent.status, 0)
        let first = try XCTUnwrap(listener.stdout.readLine())
        let second = try XCTUnwrap(listener.stdout.readLine())
        let peer = try XCTUnwrap(first.range(of: ": hello")).lowerBound
        let address = String(first[..<peer])
        XCTAssertTrue(address.hasPrefix("127.0.0.1:"), first)
        XCTAssertNotNil(Int(address.dropFirst("127.0.0.1:".count)), first)
        XCTAssertEqual(first, "\(address): hello")
        XCTAssertEqual(second, "\(address): wörld")

        _ = try run(["send", "--port", port, "--hex", "00ff"])
        let third = try XCTUnwrap(listener.stdout.readLine())
        XCTAssertTrue(third.hasPrefix("127.0.0.1:") && third.hasSuffix(": 0x00ff"), third)

        listener.signal(SIGINT)
        let exit = try listener.waitForExit()
        XCTAssertEqual(exit.reason, .exit)
        XCTAssertEqual(exit.status, 0)
    }

    // MARK: Unix sockets and byte order

    func testUnixSocketEcho() throws {
        let path = try temporaryDirectory() + "/echo.sock"
        let server = try start(["echo", "--unix", path])
        XCTAssertEqual(try server.listeningAddress(), "unix:\(path)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let result = try run(["send", "--unix", path, "--replies", "2", "over", "unix"])
        XCTAssertEqual(result.stdout, "over\nunix\n")
        XCTAssertEqual(result.status, 0)
        server.signal(SIGTERM)
        XCTAssertEqual(try server.waitForExit().status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the socket file should be removed")
    }

    func testBigEndian() throws {
        let (server, port) = try echoServer(["--byte-order", "big"])
        let result = try run(["send", "--port", port, "--byte-order", "big", "--replies", "1", "big end"])
        XCTAssertEqual(result.stdout, "big end\n")
        XCTAssertEqual(result.status, 0)

        // On the wire: a big-endian prefix comes back as a big-endian prefix.
        let raw = try RawSocket(port: Int(port)!)
        try raw.write(prefix(3, bigEndian: true) + Array("abc".utf8))
        XCTAssertEqual(try raw.read(11), [0, 0, 0, 0, 0, 0, 0, 3] + Array("abc".utf8))

        // A little-endian client's prefix reads as 2^56 bytes: dropped.
        let mismatch = try run(["send", "--port", port, "--replies", "1", "hi"])
        XCTAssertNotEqual(mismatch.status, 0)
        let logged = try XCTUnwrap(server.stderr.readLine())
        XCTAssertTrue(logged.contains("frame too large") && logged.contains("144115188075855872"), logged)
    }

    // MARK: Bad peers, signals, errors

    func testBadPeersAreDroppedWhileOtherConnectionsKeepWorking() throws {
        let (server, port) = try echoServer()
        let good = try RawSocket(port: Int(port)!)
        try good.write(prefix(5) + Array("first".utf8))
        XCTAssertEqual(try good.read(13), prefix(5) + Array("first".utf8))

        let huge = try RawSocket(port: Int(port)!)
        try huge.write(prefix(1 << 63))
        XCTAssertNil(try huge.read(1), "the server should close a peer announcing 2^63 bytes")
        let tooLarge = try XCTUnwrap(server.stderr.readLine())
        XCTAssertTrue(tooLarge.hasPrefix("toby: 127.0.0.1:"), tooLarge)
        XCTAssertTrue(tooLarge.contains("frame too large") && tooLarge.contains("9223372036854775808"), tooLarge)

        let cut = try RawSocket(port: Int(port)!)
        try cut.write(prefix(10) + Array("abc".utf8))
        cut.shutdownWrite()
        XCTAssertNil(try cut.read(1))
        let truncated = try XCTUnwrap(server.stderr.readLine())
        XCTAssertTrue(truncated.contains("truncated frame") && truncated.contains("7 bytes missing"), truncated)

        let reset = try RawSocket(port: Int(port)!)
        try reset.write(prefix(10) + Array("abc".utf8))
        reset.reset()
        let resetLine = try XCTUnwrap(server.stderr.readLine())
        XCTAssertTrue(resetLine.contains("Connection reset by peer"), resetLine)

        try good.write(prefix(6) + Array("second".utf8))
        XCTAssertEqual(try good.read(14), prefix(6) + Array("second".utf8))
        let result = try run(["send", "--port", port, "--replies", "1", "still serving"])
        XCTAssertEqual(result.stdout, "still serving\n")

        // A clean close is not an error: nothing more on stderr.
        good.shutdownWrite()
        XCTAssertNil(try good.read(1))
        server.signal(SIGTERM)
        XCTAssertEqual(try server.waitForExit().status, 0)
        XCTAssertEqual(try server.stderr.readToEnd(), "")
    }

    func testClientsThatDoNotWaitForRepliesAreNotLoggedAsErrors() throws {
        // `toby send` without --replies closes as soon as its messages are
        // out; the echo's replies then hit a closed socket (EPIPE). That is
        // not a misbehaving peer, so the server prints nothing.
        let (server, port) = try echoServer()
        for _ in 0..<10 {
            XCTAssertEqual(try run(["send", "--port", port, "a", "b", "c"]).status, 0)
        }
        let bulk = (0..<5000).map { "line \($0)" }.joined(separator: "\n") + "\n"
        XCTAssertEqual(try run(["send", "--port", port], input: bulk).status, 0)
        server.signal(SIGTERM)
        XCTAssertEqual(try server.waitForExit().status, 0)
        XCTAssertEqual(try server.stderr.readToEnd(), "")
    }

    func testMaxFrameLimitsThePeer() throws {
        let (server, port) = try echoServer(["--max-frame", "4"])
        let fits = try run(["send", "--port", port, "--replies", "1", "four"])
        XCTAssertEqual(fits.stdout, "four\n")
        let over = try RawSocket(port: Int(port)!)
        try over.write(prefix(5) + Array("fives".utf8))
        XCTAssertNil(try over.read(1))
        let logged = try XCTUnwrap(server.stderr.readLine())
        XCTAssertTrue(logged.contains("maximum frame length of 4 bytes"), logged)
    }

    /// Descriptors run out: `toby echo` under `ulimit -n 40` keeps serving
    /// the connections it has, leaves the rest in the backlog instead of
    /// dying, spinning or refusing them, accepts them once descriptors are
    /// free again, and says so once per episode: the same on every `--api`.
    func testEchoSurvivesDescriptorExhaustionAndAcceptsAgain() throws {
        for api in ["handler", "async", "blocking"] {
            try survivesDescriptorExhaustion(api: api)
        }
    }

    private func survivesDescriptorExhaustion(api: String) throws {
        let server = try ToolProcess(
            ["echo", "--port", "0", "--api", api] + (api == "blocking" ? [] : ["--threads", "1"]), descriptorLimit: 40)
        processes.append(server)
        let port = try server.listeningPort()
        var served: [RawSocket] = []
        var waiting: [RawSocket] = []
        // More connections than the server has descriptors for; the kernel
        // completes them all into the listen backlog.
        for i in 0..<60 {
            let socket = try RawSocket(port: port)
            try socket.write(prefix(1) + [UInt8(i)])
            waiting.append(socket)
        }
        // Whoever was accepted answers; the others cannot be, for now.
        var short = timeval(tv_sec: 0, tv_usec: 100_000)
        for socket in waiting {
            setsockopt(socket.fd, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
        }
        var pending: [(RawSocket, UInt8)] = []
        for (i, socket) in waiting.enumerated() {
            if let reply = try? socket.read(9), reply == prefix(1) + [UInt8(i)] {
                served.append(socket)
            } else {
                pending.append((socket, UInt8(i)))
            }
        }
        XCTAssertGreaterThan(served.count, 10, "the server serves what fits")
        XCTAssertFalse(pending.isEmpty, "the limit was reached (else the test proves nothing)")
        // The served ones still work while the others wait.
        try served[0].write(prefix(1) + [200])
        XCTAssertEqual(try served[0].read(9), prefix(1) + [200])
        // Free descriptors: every waiting connection is accepted and answered.
        served.forEach { $0.reset() }
        var long = timeval(tv_sec: 10, tv_usec: 0)
        for (socket, i) in pending {
            setsockopt(socket.fd, SOL_SOCKET, SO_RCVTIMEO, &long, socklen_t(MemoryLayout<timeval>.size))
            XCTAssertEqual(try socket.read(9), prefix(1) + [i], "connection \(i) served after descriptors were freed")
        }
        server.signal(SIGTERM)
        let stderr = try server.stderr.readToEnd()
        let exit = try server.waitForExit()
        XCTAssertEqual(exit.reason, .exit, api)
        XCTAssertEqual(exit.status, 0, api)
        // One line when a shortage starts, one when it ends: not one per failed accept.
        let lines = stderr.split(separator: "\n")
        let starts = lines.filter { $0.contains("connections wait in the backlog until some are free") }
        let ends = lines.filter { $0.hasPrefix("toby: accepting again on 127.0.0.1:\(port) after ") }
        XCTAssertGreaterThanOrEqual(starts.count, 1, "\(api): \(stderr)")
        XCTAssertTrue(starts.allSatisfy { $0.contains("Too many open files") }, "\(api): \(stderr)")
        XCTAssertGreaterThanOrEqual(ends.count, 1, "\(api): \(stderr)")
        XCTAssertLessThanOrEqual(starts.count, ends.count + 1, "\(api): \(stderr)")
        let acceptLines = lines.filter { $0.contains("accept") }
        XCTAssertLessThanOrEqual(acceptLines.count, 6, "\(api): episodes, not failures: \(stderr)")
    }

    func testSigtermEndsTheEchoServerWithStatusZero() throws {
        let (server, port) = try echoServer(["--grace", "0"])
        let open = try RawSocket(port: Int(port)!)  // with --grace 0 an open connection does not delay the exit
        try open.write(prefix(2) + Array("hi".utf8))
        XCTAssertEqual(try open.read(10), prefix(2) + Array("hi".utf8))
        server.signal(SIGTERM)
        XCTAssertNil(try open.read(1), "the open connection sees the end of stream")
        let exit = try server.waitForExit()
        XCTAssertEqual(exit.reason, .exit)
        XCTAssertEqual(exit.status, 0)
        XCTAssertEqual(try server.stderr.readToEnd(), "")
    }

    func testSendToAClosedPortFailsWithOneLine() throws {
        let closed = try SilentListener(listening: false)
        let result = try run(["send", "--port", String(closed.port), "hello"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.reason, .exit)
        XCTAssertEqual(result.stdout, "")
        XCTAssertEqual(result.stderrLines.count, 1, result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("toby: "), result.stderr)
        XCTAssertTrue(result.stderr.contains("Connection refused"), result.stderr)
    }

    func testSendErrors() throws {
        let (_, port) = try echoServer()
        let tooLarge = try run(["send", "--port", port, "--max-frame", "3", "hello"])
        XCTAssertEqual(tooLarge.status, 1)
        XCTAssertEqual(tooLarge.stderrLines.count, 1, tooLarge.stderr)
        XCTAssertTrue(tooLarge.stderr.hasPrefix("toby: frame too large"), tooLarge.stderr)

        let missing = try run(["send", "--port", port, "--replies", "3", "a", "b"])
        XCTAssertEqual(missing.stdout, "a\nb\n")
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("after 2 of 3 replies"), missing.stderr)

        let silent = try SilentListener()
        let timedOut = try run(["send", "--port", String(silent.port), "--replies", "1", "--timeout", "0.2", "anyone?"])
        XCTAssertEqual(timedOut.status, 1)
        XCTAssertTrue(timedOut.stderr.hasPrefix("toby: timed out"), timedOut.stderr)

        let unixTooLong = try run(["send", "--unix", "/tmp/" + String(repeating: "x", count: 200), "x"])
        XCTAssertEqual(unixTooLong.status, 1)
        XCTAssertTrue(unixTooLong.stderr.contains("too long"), unixTooLong.stderr)

        let badHost = try run(["send", "--host", "no.such.host.invalid", "--port", port, "x"])
        XCTAssertEqual(badHost.status, 1)
        XCTAssertEqual(badHost.stderrLines.count, 1, badHost.stderr)
        XCTAssertTrue(badHost.stderr.hasPrefix("toby: cannot resolve host 'no.such.host.invalid'"), badHost.stderr)

        let noAddress = try run(["send", "x"])
        XCTAssertNotEqual(noAddress.status, 0)
        XCTAssertTrue(noAddress.stderr.contains("--port"), noAddress.stderr)

        let inUse = try run(["echo", "--port", port])
        XCTAssertEqual(inUse.status, 1)
        XCTAssertTrue(inUse.stderr.contains("Address already in use"), inUse.stderr)
    }

    func testHelp() throws {
        let top = try run(["--help"])
        XCTAssertEqual(top.status, 0)
        for word in ["echo", "send", "listen", "Examples"] {
            XCTAssertTrue(top.stdout.contains(word), "toby --help lacks \(word)")
        }
        for command in ["echo", "send", "listen"] {
            let help = try run([command, "--help"])
            XCTAssertEqual(help.status, 0)
            for option in ["--port", "--host", "--unix", "--byte-order", "Examples:"] {
                XCTAssertTrue(help.stdout.contains(option), "toby \(command) --help lacks \(option)")
            }
        }
    }
}
