import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Where a built executable of this package is: next to the running test
/// bundle (SwiftPM puts every product of a build in one directory), or the
/// path in an environment variable.
enum BuiltExecutable {
    static func path(named name: String, environmentVariable: String) -> String? {
        if let explicit = ProcessInfo.processInfo.environment[environmentVariable] { return explicit }
        var directories: [String] = []
        let argument0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        directories.append(argument0.deletingLastPathComponent().path)
        for bundle in [Bundle.main] + Bundle.allBundles {
            directories.append(bundle.bundleURL.deletingLastPathComponent().path)
            directories.append(bundle.bundleURL.path)
            if let executable = bundle.executableURL {
                directories.append(executable.deletingLastPathComponent().path)
            }
        }
        // The xctest bundle may live in a sub-directory on some platforms.
        for directory in directories {
            var url = URL(fileURLWithPath: directory)
            for _ in 0..<3 {
                let candidate = url.appendingPathComponent(name).path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                url.deleteLastPathComponent()
            }
        }
        return nil
    }

    static func require(_ name: String, environmentVariable: String) throws -> String {
        guard let path = path(named: name, environmentVariable: environmentVariable) else {
            throw ToolTestError(
                "the '\(name)' executable was not found next to the test bundle (\(CommandLine.arguments[0])); "
                    + "build it with 'swift build' (plain 'swift test' builds it) or set \(environmentVariable)")
        }
        return path
    }
}

/// Where the `toby` binary is, or `TOBY_BINARY`.
enum TobyBinary {
    static func require() throws -> String {
        try BuiltExecutable.require("toby", environmentVariable: "TOBY_BINARY")
    }
}

struct ToolTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Longest a test waits for any event before failing; a failsafe, not a
/// synchronisation delay.
let failsafeSeconds: Double = 60

/// Reads lines from a pipe, waiting at most the failsafe for each.
final class LineReader {
    let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var atEnd = false

    init(_ handle: FileHandle) {
        fd = handle.fileDescriptor
    }

    /// The next line without its newline, or nil at end of file.
    func readLine(timeout: Double = failsafeSeconds) throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            if atEnd {
                if buffer.isEmpty { return nil }
                defer { buffer.removeAll() }
                return String(decoding: buffer, as: UTF8.self)
            }
            try fill(until: deadline)
        }
    }

    /// Everything until end of file.
    func readToEnd(timeout: Double = failsafeSeconds) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while !atEnd { try fill(until: deadline) }
        defer { buffer.removeAll() }
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Reads what is available, waiting for it until `deadline`.
    func fill(until deadline: Date) throws {
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
        let ready = poll(&pollfd, 1, remaining)
        if ready < 0 && errno == EINTR { return }
        guard ready > 0 else { throw ToolTestError("timed out after \(failsafeSeconds)s waiting for output on fd \(fd)") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &chunk, chunk.count)
        if n > 0 { buffer.append(contentsOf: chunk[..<n]) } else if n == 0 || errno != EINTR { atEnd = true }
    }
}

/// A running `toby` process with its stdout and stderr on pipes.
final class ToolProcess {
    let process = Process()
    let arguments: [String]
    let stdout: LineReader
    let stderr: LineReader
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()

    /// Starts `executable` (the `toby` binary unless given) with `arguments`.
    /// - Parameter descriptorLimit: if set, it runs with its RLIMIT_NOFILE
    ///   lowered to this (through `ulimit -n` in a shell).
    init(_ arguments: [String], executable: String? = nil, descriptorLimit: Int? = nil) throws {
        self.arguments = arguments
        let binary = try executable ?? TobyBinary.require()
        if let descriptorLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(descriptorLimit) && exec \"$0\" \"$@\"", binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        stdout = LineReader(stdoutPipe.fileHandleForReading)
        stderr = LineReader(stderrPipe.fileHandleForReading)
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Writes `text` to the process's stdin on another thread (so a full
    /// stdout pipe cannot block both sides), then closes it.
    func finishInput(_ text: String) {
        let handle = stdinPipe.fileHandleForWriting
        let data = Data(text.utf8)
        Thread.detachNewThread {
            try? handle.write(contentsOf: data)
            try? handle.close()
        }
    }

    /// Reads the server's `listening on ADDRESS` line and returns ADDRESS.
    func listeningAddress() throws -> String {
        guard let line = try stdout.readLine() else {
            let error = (try? stderr.readToEnd(timeout: 5)) ?? ""
            throw ToolTestError("toby \(arguments.joined(separator: " ")) ended without a 'listening on' line; stderr: \(error)")
        }
        let prefix = "listening on "
        guard line.hasPrefix(prefix) else { throw ToolTestError("unexpected first line: \(line)") }
        return String(line.dropFirst(prefix.count))
    }

    /// The port of the server's `listening on HOST:PORT` line.
    func listeningPort() throws -> Int {
        let address = try listeningAddress()
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ToolTestError("no port in 'listening on \(address)'")
        }
        return port
    }

    func signal(_ number: Int32) {
        if process.isRunning { Glibc.kill(pid, number) }
    }

    /// Waits for the exit (failsafe: kills it and fails after the timeout).
    func waitForExit(timeout: Double = failsafeSeconds) throws -> (reason: Process.TerminationReason, status: Int32) {
        let deadline = Date().addingTimeInterval(timeout)
        // The pipes reach end of file when the process and its children exit.
        do {
            while !stdout.atEnd { try stdout.fill(until: deadline) }
        } catch {
            kill()
            throw ToolTestError("toby \(arguments.joined(separator: " ")) did not exit")
        }
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus)
    }

    /// Kills the process if it is still running; used in tearDown.
    func kill() {
        if process.isRunning {
            Glibc.kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// What a finished `toby` run printed.
struct ToolResult {
    let status: Int32
    let reason: Process.TerminationReason
    let stdout: String
    let stderr: String

    var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: false).dropLast() }
}

/// A plain TCP socket speaking raw bytes, for peers `toby` must survive.
final class RawSocket {
    private(set) var fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ToolTestError("socket: \(errno)") }
        var timeout = timeval(tv_sec: Int(failsafeSeconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            close(fd)
            throw ToolTestError("connect to port \(port): errno \(errno)")
        }
    }

    /// Takes ownership of a connected socket (one `accept` returned).
    init(accepted fd: Int32) {
        self.fd = fd
        var timeout = timeval(tv_sec: Int(failsafeSeconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { if fd >= 0 { close(fd) } }

    /// This end's port: with 127.0.0.1, the peer address a server names.
    var localPort: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Waits at most `milliseconds` for something to read, or for the end
    /// of the stream or a reset; true if there is.
    func isReadable(within milliseconds: Int32) -> Bool {
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pollfd, 1, milliseconds) > 0
    }

    /// Closes abortively: the peer gets a TCP reset instead of an end of stream.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        fd = -1
    }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ToolTestError("send: errno \(errno)") }
            offset += n
        }
    }

    /// Exactly `count` bytes, or nil if the stream ends (or is reset) first.
    func read(_ count: Int) throws -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = bytes[filled...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno == ECONNRESET) { return nil }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ToolTestError("recv: errno \(errno) (timeout is a failsafe)") }
            filled += n
        }
        return bytes
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

/// The 8-byte prefix announcing `length`, in either byte order.
func prefix(_ length: UInt64, bigEndian: Bool = false) -> [UInt8] {
    withUnsafeBytes(of: bigEndian ? length.bigEndian : length.littleEndian) { Array($0) }
}

/// A TCP socket bound to a free port that never accepts: connections
/// complete in the kernel's backlog and then hear nothing. With
/// `listening: false` it only holds the port, so connecting is refused
/// (and no other process can take the port meanwhile).
final class SilentListener {
    let fd: Int32
    let port: Int

    init(listening: Bool = true) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && (!listening || listen(fd, 16) == 0) && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw ToolTestError("cannot listen: errno \(errno)")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}
