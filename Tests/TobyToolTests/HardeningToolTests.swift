import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 11, items 5 and 6: `toby listen | head -1`, and `toby send
/// --replies N` against a peer that behaves like the Rust crate.
final class HardeningToolTests: XCTestCase {
    private var processes: [Process] = []

    override func tearDown() {
        for process in processes where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        processes.removeAll()
        super.tearDown()
    }

    /// Waits for `process` to exit, at most `seconds` (a failsafe).
    private func waitForExit(_ process: Process, within seconds: Double = failsafeSeconds) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning {
            guard Date() < deadline else { throw ToolTestError("\(process.arguments ?? []) did not exit") }
            usleep(5_000)  // polling for the exit, with a deadline
        }
        process.waitUntilExit()
    }

    /// `toby listen | head -1`: once the reader of stdout is gone, the next
    /// line ends the tool quietly with status 0 (it used to die of SIGPIPE).
    func testListenEndsQuietlyWhenStdoutIsClosed() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        let stdoutRead = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let stdoutWrite = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
        let stderrPipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TobyBinary.require())
        process.arguments = ["listen", "--port", "0"]
        process.standardOutput = stdoutWrite
        process.standardError = stderrPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes.append(process)
        try stdoutWrite.close()  // the child has its own copy

        let lines = LineReader(stdoutRead)
        let first = try XCTUnwrap(try lines.readLine())
        XCTAssertTrue(first.hasPrefix("listening on 127.0.0.1:"), first)
        let port = try XCTUnwrap(Int(first.split(separator: ":").last ?? ""))
        try stdoutRead.close()  // `head -1` exits

        let client = try RawSocket(port: port)
        try client.write(prefix(5) + Array("hello".utf8))
        try client.write(prefix(5) + Array("again".utf8))
        try waitForExit(process)
        XCTAssertEqual(process.terminationReason, .exit, "killed by signal \(process.terminationStatus)")
        XCTAssertEqual(process.terminationStatus, 0)
        let stderr = try LineReader(stderrPipe.fileHandleForReading).readToEnd()
        XCTAssertEqual(stderr, "")
    }

    /// A peer like the Rust crate: answers each message a little later (its
    /// application at work) and, when it reads the client's half-close,
    /// shuts the socket down both ways, dropping the replies it still owes.
    /// `toby send --replies N` keeps its write side open until the N replies
    /// are in (it used to half-close at once and get 0 of 2).
    func testSendKeepsTheWriteSideOpenUntilTheRepliesArrive() throws {
        let server = Process()
        let serverOut = Pipe()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-c", HardeningToolTests.crateLikeServer]
        server.standardOutput = serverOut
        server.standardInput = FileHandle.nullDevice
        try server.run()
        processes.append(server)
        let serverLines = LineReader(serverOut.fileHandleForReading)
        let port = try XCTUnwrap(Int(try XCTUnwrap(try serverLines.readLine())))

        let client = try ToolProcess(["send", "--port", String(port), "--byte-order", "big", "--replies", "2", "a", "b"])
        processes.append(client.process)
        client.finishInput("")
        let stdout = try client.stdout.readToEnd()
        let stderr = try client.stderr.readToEnd()
        let (reason, status) = try client.waitForExit()
        XCTAssertEqual(stdout, "a\nb\n", stderr)
        XCTAssertEqual(stderr, "")
        XCTAssertEqual(reason, .exit)
        XCTAssertEqual(status, 0)
        // The server saw the half-close only after answering both.
        XCTAssertEqual(try serverLines.readLine(), "replied 2, then half-close")
        try waitForExit(server)
    }

    static let crateLikeServer = #"""
        import queue, socket, struct, sys, threading, time
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        listener.close()
        replies = queue.Queue()
        sent = [0]
        def answer():
            while True:
                message = replies.get()
                if message is None:
                    return
                time.sleep(0.2)  # the application takes a while to answer
                try:
                    conn.sendall(struct.pack(">Q", len(message)) + message)
                    sent[0] += 1
                except OSError:
                    return
        threading.Thread(target=answer, daemon=True).start()
        def read_exactly(n):
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    return None
                data += chunk
            return data
        while True:
            header = read_exactly(8)
            if header is None:
                break
            body = read_exactly(struct.unpack(">Q", header)[0])
            if body is None:
                break
            replies.put(body)
        # As the crate does on the client's half-close: shut down both ways, drop what is owed.
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        print("replied %d, then half-close" % sent[0], flush=True)
        """#
}
