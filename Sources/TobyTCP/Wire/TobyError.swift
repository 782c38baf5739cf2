import CTobyFrame

import Glibc

/// Everything that can go wrong in TobyTCP, with the numbers that explain it.
///
/// Every case prints a sentence a person can act on (``description``): the
/// announced length and the limit, how many bytes of a cut frame were
/// missing, or the system call and the `errno` it failed with.
///
/// Errors caused by a peer's bytes never trap; only misuse of the API by the
/// program itself (for example a negative timeout) does.
public enum TobyError: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    /// A frame's length is over the configured maximum.
    ///
    /// When receiving, `prefix` holds the 8 length bytes exactly as they came
    /// off the wire and the connection is shut down (the stream cannot be
    /// resynchronised); nothing of that size was allocated. When sending,
    /// `prefix` is empty and no byte of the message was written.
    case frameTooLarge(length: UInt64, limit: UInt64, prefix: [UInt8])

    /// The peer closed the connection in the middle of a frame.
    ///
    /// `expected` is the size of the unfinished frame including its 8-byte
    /// prefix (just 8 when the prefix itself was cut), `received` how many of
    /// its bytes arrived. Every complete message before it was delivered.
    case truncatedFrame(expected: UInt64, received: UInt64)

    /// `start()` was called a second time on the same messenger.
    case alreadyStarted

    /// The messenger, receiver or listener was closed by its owner.
    case closed

    /// The stream ended cleanly; thrown only by ``TobyReceiver/tryReceive()``,
    /// which returns `nil` for "nothing yet".
    case endOfStream

    /// No message arrived within the timeout (a receive's, or
    /// ``TobyConfiguration/readTimeout``). A blocking receiver is still
    /// usable; a server's connection is ended.
    case timedOut(Duration)
    /// A send waited ``TobyConfiguration/writeTimeout`` for room in the
    /// connection's queue (its peer does not read fast enough) and gave up:
    /// that message was not accepted; the connection is still usable.
    case writeTimedOut(Duration)
    /// A connect to `address` did not complete within `timeout`.
    case connectTimedOut(address: String, timeout: Duration)

    /// A system call failed: `operation` is its name, `errno` its error.
    case system(operation: String, errno: Int32)

    /// A system call about an address failed: `connect` to a peer, `bind/listen`
    /// or `accept` on a listening address. `address` is the address as text
    /// (`"127.0.0.1:9"`, `"[::1]:9"`, `"unix:/path"`).
    ///
    /// Printed as `'connect' to 127.0.0.1:9 failed with '(111) Connection refused'`.
    case systemAtAddress(operation: String, address: String, errno: Int32)

    /// The listener ran out of file descriptors (`EMFILE` for the process,
    /// `ENFILE` for the system) while accepting. The pending connection
    /// stays in the kernel's backlog, and the listener stays usable: call
    /// ``TobyListener/accept()`` again, which pauses first (10 ms doubling to
    /// 1 s while the shortage lasts) and accepts it once descriptors are free
    /// (each connection closed frees one).
    case outOfDescriptors(address: String, errno: Int32)

    /// A host name did not resolve.
    case unresolvableHost(host: String, reason: String)

    /// A Unix socket path does not fit in `sun_path`; it is never truncated.
    case unixPathTooLong(path: String, length: Int, limit: Int)

    /// A configuration was contradictory or out of range.
    case invalidConfiguration(String)

    /// Another task is already receiving from this async connection: a
    /// connection has one consumer at a time.
    case alreadyReceiving

    /// The `errno` of a failed system call (``system(operation:errno:)``,
    /// ``systemAtAddress(operation:address:errno:)``,
    /// ``outOfDescriptors(address:errno:)``), else `nil`.
    public var systemErrno: Int32? {
        switch self {
        case .system(_, let code), .systemAtAddress(_, _, let code), .outOfDescriptors(_, let code): return code
        default: return nil
        }
    }

    /// The number of payload bytes still missing from a truncated frame.
    public var missingBytes: UInt64? {
        if case .truncatedFrame(let expected, let received) = self { return expected - received }
        return nil
    }

    /// A sentence describing the error, with its numbers.
    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit, let prefix):
            if prefix.isEmpty {
                return
                    "frame too large: message of \(length) bytes exceeds the maximum frame length of \(limit) bytes; nothing was sent"
            }
            var text =
                "frame too large: peer announced \(length) bytes, over the maximum frame length of \(limit) bytes (prefix bytes \(TobyError.hex(prefix))); connection closed, nothing allocated"
            if prefix.allSatisfy({ (0x20...0x7e).contains($0) || $0 == 0x0d || $0 == 0x0a || $0 == 0x09 }) {
                let ascii = String(decoding: prefix, as: UTF8.self)
                    .replacingOccurrences(of: "\r", with: "\\r")
                    .replacingOccurrences(of: "\n", with: "\\n")
                    .replacingOccurrences(of: "\t", with: "\\t")
                text +=
                    ". The prefix reads as text (\"\(ascii)\"): the peer looks like it speaks a text protocol (HTTP, Redis, a shell?), not TobyTcp"
            } else if let hint = TobyError.byteOrderHint(length: length, limit: limit, prefix: prefix) {
                text += ". " + hint
            }
            return text
        case .truncatedFrame(let expected, let received):
            let what =
                expected == 8
                ? "the 8-byte length prefix" : "a frame of \(expected) bytes (8-byte prefix + \(expected - 8)-byte payload)"
            return
                "truncated frame: peer closed the connection after \(received) bytes of \(what); \(expected - received) bytes missing"
        case .alreadyStarted:
            return "already started: start() was already called on this messenger; use the receiver it returned"
        case .closed:
            return "closed: the messenger, receiver or listener was closed by its owner"
        case .endOfStream:
            return "end of stream: the peer closed the connection and every message was delivered"
        case .timedOut(let timeout):
            return "timed out: no message arrived within \(timeout)"
        case .writeTimedOut(let timeout):
            return
                "timed out: the send waited \(timeout) for room in the connection's queue (the peer is not reading fast enough); the message was not sent"
        case .connectTimedOut(let address, let timeout):
            return "timed out: the connect to \(address) did not complete within \(timeout)"
        case .system(let operation, let errno):
            return "'\(operation)' failed with \(TobyError.describe(errno: errno))"
        case .systemAtAddress(let operation, let address, let errno):
            let preposition = operation == "connect" ? "to" : "on"
            return "'\(operation)' \(preposition) \(address) failed with \(TobyError.describe(errno: errno))"
        case .outOfDescriptors(let address, let errno):
            return
                "'accept' on \(address) failed with \(TobyError.describe(errno: errno)): out of file descriptors; the pending connection waits in the backlog, and accepting works again once descriptors are freed"
        case .unresolvableHost(let host, let reason):
            return "cannot resolve host '\(host)': \(reason)"
        case .unixPathTooLong(let path, let length, let limit):
            return
                "Unix socket path too long: '\(path)' is \(length) bytes, the limit is \(limit) bytes (sun_path); it is never truncated"
        case .invalidConfiguration(let why):
            return "invalid configuration: \(why)"
        case .alreadyReceiving:
            return
                "already receiving: another task is iterating this connection's messages; a connection has one consumer at a time"
        }
    }

    /// The same sentence as ``description``.
    ///
    /// Foundation's `localizedDescription` for an `any Error` (on Linux,
    /// swift-corelibs-foundation) reads only Foundation's own protocols
    /// (`LocalizedError`, `CustomNSError`), which the library cannot adopt
    /// without linking Foundation. This member takes its place wherever the
    /// error's type is `TobyError`: in a `catch` after calls that throw
    /// `TobyError` (Swift 6 infers the type), or after `as? TobyError`. For
    /// an `any Error`, print `"\(error)"`, which is ``description``.
    public var localizedDescription: String { description }

    /// `'(111) Connection refused'`.
    static func describe(errno: Int32) -> String {
        "'(\(errno)) \(String(cString: strerror(errno)))'"
    }

    /// When a received prefix over the limit would be a plausible length
    /// (within the limit) read in the other byte order, says so: the
    /// commonest cause is a peer built on the Rust crate (big-endian).
    static func byteOrderHint(length: UInt64, limit: UInt64, prefix: [UInt8]) -> String? {
        guard prefix.count == 8 else { return nil }
        let little = prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let big = prefix.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard little != big else { return nil }
        if length == little, big <= limit {
            return
                "Read big-endian it would be \(big) bytes: the peer may be using big-endian prefixes: set byteOrder: .bigEndian"
        }
        if length == big, little <= limit {
            return
                "Read little-endian it would be \(little) bytes: the peer may be using little-endian prefixes: set byteOrder: .littleEndian"
        }
        return nil
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { hexEncoded($0, separator: UInt8(ascii: " ")) }
    }

    /// Maps a negative CTobyFrame return code to an error.
    static func fromCode(_ code: Int, operation: String) -> TobyError {
        if code == Int(TOBY_EINVAL) { return .system(operation: operation, errno: EINVAL) }
        return .system(operation: operation, errno: Int32(-code))
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        var result = ""
        for character in self {
            if String(character) == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
