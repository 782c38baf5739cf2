import TobyTCP

import Glibc

/// Whole lines to stdout and stderr, written with `write(2)` under a lock so
/// that lines from different connection threads never interleave.
enum Output {
    private static let lock = ConditionLock()

    /// Writes `line` and a newline to stdout, immediately.
    static func line(_ line: String) {
        emit(line, to: 1)
    }

    /// Writes `toby: message` to stderr.
    static func error(_ message: String) {
        emit("toby: " + message, to: 2)
    }

    private static func emit(_ line: String, to fd: Int32) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        lock.withLock {
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n > 0 {
                        offset += n
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        return  // stdout closed (EPIPE) or full disk: drop the line
                    }
                }
            }
        }
    }
}
