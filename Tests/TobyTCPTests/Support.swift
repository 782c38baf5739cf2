import Foundation
import XCTest

@testable import TobyTCP
import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// A connected pair: a TobyMessenger on one end, a raw socket on the other,
/// so tests can write exact bytes (split anywhere) and read exact bytes.
final class RawPeer: @unchecked Sendable {
    private(set) var fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { if fd >= 0 { close(fd) } }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            precondition(n > 0, "send failed: \(errno)")
            offset += n
        }
    }

    /// Reads exactly `count` bytes (or fewer at end of stream).
    func read(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = result.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { break }
            got += n
        }
        return Array(result[0..<got])
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func closeNow() {
        close(fd)
        fd = -1
    }

    /// Closes with SO_LINGER 0: the kernel sends a reset.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        fd = -1
    }
}

/// A messenger and a raw peer joined by a Unix socketpair.
func makePair(_ configuration: TobyConfiguration = .default) throws -> (TobyMessenger, RawPeer) {
    var fds: [Int32] = [0, 0]
    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
    return (try TobyMessenger(socket: fds[0], configuration: configuration), RawPeer(fd: fds[1]))
}

/// Two messengers joined by loopback TCP through a listener on port 0.
func makeTCPPair(_ configuration: TobyConfiguration = .default) throws -> (client: TobyMessenger, server: TobyMessenger) {
    let listener = try TobyListener(host: "127.0.0.1", port: 0, configuration: configuration)
    defer { listener.close() }
    let client = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port, configuration: configuration)
    let server = try listener.accept()
    return (client, server)
}

func frame(_ payload: [UInt8], _ order: TobyConfiguration.ByteOrder = .littleEndian) -> [UInt8] {
    TobyProtocol.encode(payload, byteOrder: order)
}

/// Deterministic pseudo-random bytes (no Foundation randomness in assertions).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(state: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// Runs `body` on `count` real threads at once and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    var threads: [Thread] = []
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = 1 << 20
        threads.append(thread)
    }
    threads.forEach { $0.start() }
    group.wait()
}

/// Peak resident memory of this process, in bytes.
func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// Current resident memory of this process, in bytes (from /proc/self/statm).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func openFileDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}
