import CTobyFrame
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes sent on `fd` that the peer has not acknowledged (TCP's `SIOCOUTQ`;
/// for a Unix socket, bytes the peer has not read). Unknown counts as some.
func unacknowledgedBytes(_ fd: Int32) -> Int {
    var count: Int32 = 0
    guard ioctl(fd, UInt(TIOCOUTQ), &count) == 0 else { return 1 }
    return Int(count)
}

/// Owns one socket file descriptor, shared by a messenger and its receiver.
///
/// The descriptor is closed only when the last owner goes away. Closing it
/// earlier, while another thread may still be blocked in `recvmsg` on it,
/// would let the number be reused by an unrelated `open` and that thread
/// would read someone else's file. Owners end each other's blocking calls
/// with `shutdown(2)` instead, which is safe at any time.
final class SocketHandle: Sendable {
    let fd: Int32

    /// A graceful shutdown (``TobyMessenger/shutdown(linger:)``) began: the
    /// receiver delivers nothing more.
    let quiescing = Atomic<Bool>(false)
    /// The receiver is waiting for bytes (in `recvmsg` or `poll`), so its
    /// owner holds no delivered message it still has to answer.
    let receiverParked = Atomic<Bool>(false)
    /// The receiver saw the shutdown and ended its stream.
    let receiverStopped = Atomic<Bool>(false)

    // What ``TobyMessenger/statistics`` reports. Each has one writer at a
    // time (the receive side's lock holder; the send side's lock holder or
    // writer), so it is bumped with a relaxed load and store, which costs
    // what a plain increment does, and read from any thread without a lock
    // (a receive holds its lock while it blocks).
    let messagesReceived = Atomic<Int>(0)
    let bytesReceived = Atomic<Int>(0)
    let messagesSent = Atomic<Int>(0)
    let bytesSent = Atomic<Int>(0)
    let openedAt = ContinuousClock.now

    init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        _ = Glibc.close(fd)
    }

    /// Bytes sent that the peer has not acknowledged (TCP's `SIOCOUTQ`; for
    /// a Unix socket, bytes the peer has not read). Unknown counts as some.
    var unacknowledgedBytes: Int { TobyTCP.unacknowledgedBytes(fd) }

    /// `shutdown(2)`; ENOTCONN (the peer is already gone) is not an error here.
    func shutdown(_ how: Int32) {
        _ = Glibc.shutdown(fd, how)
    }

    /// Waits until the socket is readable or `timeoutNanoseconds` pass
    /// (nil: forever). Returns false on timeout. EINTR is retried with the
    /// remaining time.
    func waitReadable(deadline: UInt64?) throws(TobyError) -> Bool {
        try poll(events: Int16(POLLIN), deadline: deadline)
    }

    /// Waits until the socket is writable (after EAGAIN from a send).
    func waitWritable() throws(TobyError) {
        _ = try poll(events: Int16(POLLOUT), deadline: nil)
    }

    private func poll(events: Int16, deadline: UInt64?) throws(TobyError) -> Bool {
        while true {
            var timeoutMilliseconds: Int32 = -1
            if let deadline {
                let now = monotonicNanoseconds()
                if now >= deadline { return false }
                // Round up so a wait never returns before the deadline.
                timeoutMilliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let rc = Glibc.poll(&pfd, 1, timeoutMilliseconds)
            if rc > 0 { return true }
            if rc == 0 {
                if let deadline, monotonicNanoseconds() >= deadline { return false }
                continue
            }
            let err = errno
            if err == EINTR { continue }
            throw .system(operation: "poll", errno: err)
        }
    }
}

extension Atomic where Value == Int {
    /// Adds `count` for the field's only writer (see ``SocketHandle``'s
    /// counters): not a read-modify-write, so no lock prefix.
    @inline(__always)
    func bump(_ count: Int) {
        #if !TOBY_NO_STATISTICS  // Scripts/statistics-overhead.sh
        store(load(ordering: .relaxed) &+ count, ordering: .relaxed)
        #endif
    }
}
