import TobyTCP

import Glibc

/// Whole lines to stdout and stderr, written with `write(2)` under a lock so
/// that lines from different connection threads never interleave.
enum Output {
    private static let lock = ConditionLock()

    /// Writes `line` and a newline to stdout, immediately. If stdout was
    /// closed by its reader (EPIPE: `toby listen | head -1`), nobody wants
    /// more output: the tool ends quietly with status 0.
    static func line(_ line: String) {
        if emit(line, to: 1) == EPIPE { exit(0) }
    }

    /// Writes `toby: message` to stderr.
    static func error(_ message: String) {
        emit("toby: " + message, to: 2)
    }

    /// Writes the one stderr line about a connection that ended badly,
    /// `toby: PEER: what happened`; a connection dropped by --read-timeout
    /// says so.
    static func connectionError(_ peer: String, _ error: any Error) {
        if case .timedOut(let timeout)? = error as? TobyError {
            self.error("\(peer): timed out: no complete message within \(timeout) (--read-timeout); connection closed")
        } else {
            self.error("\(peer): \(error)")
        }
    }

    /// Writes the line; returns 0, or the errno that made it drop the line
    /// (EPIPE for a closed pipe, ENOSPC for a full disk, ...).
    @discardableResult
    private static func emit(_ line: String, to fd: Int32) -> Int32 {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return lock.withLock {
            bytes.withUnsafeBytes { buffer -> Int32 in
                guard let base = buffer.baseAddress else { return 0 }
                var offset = 0
                while offset < buffer.count {
                    let n = write(fd, base + offset, buffer.count - offset)
                    if n > 0 {
                        offset += n
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        return n < 0 ? errno : EIO  // drop the line
                    }
                }
                return 0
            }
        }
    }
}
