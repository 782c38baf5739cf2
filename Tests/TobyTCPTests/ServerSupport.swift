import Foundation
import CTobyFrame
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Echoes every message straight from the ring.
struct EchoHandler: TobyServerHandler {
    func received(_ messages: TobyMessages, on connection: TobyConnection) {
        try? connection.send(contentsOf: messages)
    }
}

/// What a server's handlers saw, collected across loop threads.
final class ServerEvents: @unchecked Sendable {
    private let lock = ConditionLock()
    private var messages: [[UInt8]] = []
    private var closures: [TobyError?] = []
    private var opened: [TobyConnection] = []
    private var inputEnds = 0

    func open(_ connection: TobyConnection) {
        lock.withLock {
            opened.append(connection); lock.broadcast()
        }
    }
    func receive(_ batch: TobyMessages) {
        lock.withLock {
            messages.append(contentsOf: batch.copied()); lock.broadcast()
        }
    }
    func inputEnded() {
        lock.withLock {
            inputEnds += 1; lock.broadcast()
        }
    }
    func close(_ error: TobyError?) {
        lock.withLock {
            closures.append(error); lock.broadcast()
        }
    }

    var received: [[UInt8]] { lock.withLock { messages } }
    var closed: [TobyError?] { lock.withLock { closures } }
    var connections: [TobyConnection] { lock.withLock { opened } }

    /// Waits (at most `seconds`) until `condition` holds; returns whether it did.
    func wait(seconds: Double = 10, until condition: () -> Bool) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        lock.lock()
        defer { lock.unlock() }
        while !condition() {
            if monotonicNanoseconds() >= deadline { return false }
            _ = lock.wait(untilMonotonicNanoseconds: min(deadline, monotonicNanoseconds() + 20_000_000))
        }
        return true
    }

    func waitForClosures(_ count: Int, seconds: Double = 10) -> Bool {
        wait(seconds: seconds) { closures.count >= count }
    }

    func waitForConnections(_ count: Int, seconds: Double = 10) -> Bool {
        wait(seconds: seconds) { opened.count >= count }
    }

    func waitForMessages(_ count: Int, seconds: Double = 10) -> Bool {
        wait(seconds: seconds) { messages.count >= count }
    }
}

/// Records everything, and optionally echoes.
struct RecordingHandler: TobyServerHandler {
    let events: ServerEvents
    var echo = false

    func connectionOpened(_ connection: TobyConnection) { events.open(connection) }

    func received(_ messages: TobyMessages, on connection: TobyConnection) {
        events.receive(messages)
        if echo { try? connection.send(contentsOf: messages) }
    }

    func inputEnded(on connection: TobyConnection) {
        events.inputEnded()
        connection.close()
    }

    func connectionClosed(_ connection: TobyConnection, error: TobyError?) { events.close(error) }
}

/// A blocking TCP client socket with exact reads and writes.
func connectRaw(port: Int) throws -> RawPeer {
    var fd: Int32 = -1
    let rc = toby_socket_connect_tcp("127.0.0.1", UInt16(port), &fd, nil)
    guard rc == 0 else { throw TobyError.system(operation: "connect", errno: -rc) }
    return RawPeer(fd: fd)
}

extension RawPeer {
    /// Sets a receive timeout, so a test never hangs on a read.
    func setReceiveTimeout(seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads one little-endian frame's payload, or nil at end of stream.
    func readFrame() -> [UInt8]? {
        let prefix = read(8)
        guard prefix.count == 8 else { return nil }
        guard let length = TobyProtocol.length(fromPrefix: prefix) else { return nil }
        let payload = read(Int(length))
        return payload.count == Int(length) ? payload : nil
    }

    /// The errno of a read at end of stream or failure (0 for a clean end).
    func readEndErrno() -> Int32 {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        return n < 0 ? errno : 0
    }
}

/// Raises the soft descriptor limit to the hard one.
func raiseDescriptorLimit() -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return Int(limit.rlim_cur)
}

/// Under AddressSanitizer freed memory sits in its quarantine, so resident
/// size says nothing about what the code holds: memory bounds are checked
/// only without it (CI's ASan step sets ASAN_OPTIONS).
let underAddressSanitizer = getenv("ASAN_OPTIONS") != nil
