import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// The client of the echo-server scenarios: plain sockets, not the library,
/// so it costs the same against every server.
///
/// Each connection sends `messages` frames of 64 B (8-byte little-endian
/// prefix + payload, made by `Payloads` with the tag `index % tags`) and
/// keeps at most `window` of them unanswered. Every echoed byte is compared
/// with the bytes sent (memcmp against the periodic stream), and a
/// connection must get back exactly what it sent: a server that loses,
/// reorders, cuts, merges or mixes up frames between connections fails the
/// run instead of posting a number.
///
/// A thread with one connection uses it blocking (recv, then send); a
/// thread with several makes them non-blocking and waits on its own epoll
/// instance (level-triggered, via CTobyFrame's `toby_loop`).
enum EchoClient {
    static let payloadSize = 64
    static let frameSize = 72
    /// Distinct payload tags, so a frame delivered to the wrong connection fails.
    static let tags = 16

    /// The bytes every connection of one tag sends, endlessly: `Payloads`
    /// repeats after 256 frames; `window` more frames are appended so any
    /// window of frames is one contiguous slice.
    struct Streams: @unchecked Sendable {
        let units: [UnsafeMutableRawBufferPointer]
        let periodBytes: Int

        init(window: Int) {
            periodBytes = 256 * EchoClient.frameSize
            units = (0..<EchoClient.tags).map { tag in
                let bytes = Payloads(size: EchoClient.payloadSize, tag: UInt8(tag)).framedStream(frames: 256 + window)
                let unit = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
                bytes.withUnsafeBytes { unit.copyMemory(from: $0) }
                return unit
            }
        }

        func deallocate() { for unit in units { unit.deallocate() } }

        /// The bytes at stream offset `offset`, up to `count` of them (less
        /// at the end of the unit).
        @inline(__always)
        func slice(tag: Int, offset: Int, count: Int) -> UnsafeRawBufferPointer {
            let unit = units[tag]
            let start = offset % periodBytes
            return UnsafeRawBufferPointer(rebasing: unit[start..<min(unit.count, start + count)])
        }

        /// True if `chunk` is what the stream holds at `offset`.
        func matches(tag: Int, offset: Int, _ chunk: UnsafeRawBufferPointer) -> Bool {
            var done = 0
            while done < chunk.count {
                let expected = slice(tag: tag, offset: offset + done, count: chunk.count - done)
                if memcmp(chunk.baseAddress! + done, expected.baseAddress!, expected.count) != 0 { return false }
                done += expected.count
            }
            return true
        }
    }

    /// One connection's progress, in stream bytes.
    struct Progress {
        let fd: Int32
        let tag: Int
        var sent = 0
        var received = 0
        var wantsWrite = false
    }

    /// `count` blocking TCP connections to 127.0.0.1:`port` (TCP_NODELAY).
    /// Waits whenever more than 512 connections are not yet accepted by the
    /// server (`accepted`), so the backlog never overflows into SYN retries.
    static func connect(_ count: Int, port: Int, accepted: () -> Int, timeout: Double) throws -> [Int32] {
        var fds: [Int32] = []
        fds.reserveCapacity(count)
        do {
            let deadline = nowNanoseconds() + UInt64(timeout * 1e9)
            for _ in 0..<count {
                while fds.count - accepted() > 512 {
                    if nowNanoseconds() > deadline {
                        throw BenchError.timeout("server accepted \(accepted()) of \(fds.count) connections")
                    }
                    usleep(200)
                }
                fds.append(try RawSocket.connect(port: UInt16(port)))
            }
            try waitUntil(timeout: timeout, "server accepted \(accepted()) of \(count) connections") { accepted() >= count }
        } catch {
            close(fds)
            throw error
        }
        return fds
    }

    static func close(_ fds: [Int32]) {
        for fd in fds { _ = Glibc.close(fd) }
    }

    /// Polls `condition` every 200 µs until it holds; throws after `timeout` s.
    static func waitUntil(timeout: Double, _ what: @autoclosure () -> String, _ condition: () -> Bool) throws {
        let deadline = nowNanoseconds() + UInt64(timeout * 1e9)
        while !condition() {
            if nowNanoseconds() > deadline { throw BenchError.timeout(what()) }
            usleep(200)
        }
    }

    /// Runs the echo traffic on `fds` from `threads` threads (connection i
    /// on thread i % threads); returns the nanoseconds from the release of
    /// the threads until the last connection got its last byte, and the
    /// number of non-empty `recv` calls the clients made (how the server
    /// batched its replies).
    static func run(
        fds: [Int32], threads: Int, messages: Int, window: Int, timeout: Double
    ) throws -> (nanoseconds: UInt64, reads: Int) {
        let streams = Streams(window: window)
        defer { streams.deallocate() }
        let deadline = Box<UInt64>(0)
        let reads = Box(0)
        let readsLock = Lock()
        let bodies: [@Sendable () throws -> Void] = (0..<min(threads, fds.count)).map { thread in
            let mine = stride(from: thread, to: fds.count, by: threads).map { Progress(fd: fds[$0], tag: $0 % tags) }
            return {
                let n: Int
                if mine.count == 1 {
                    n = try blocking(mine[0], streams: streams, messages: messages, window: window, timeout: timeout)
                } else {
                    n = try polling(mine, streams: streams, messages: messages, window: window, deadline: deadline)
                }
                readsLock.withLock { reads.value += n }
            }
        }
        deadline.value = nowNanoseconds() + UInt64(timeout * 1e9)
        let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
        return (nanoseconds, readsLock.withLock { reads.value })
    }

    /// The stream bytes a connection may have sent, given what came back.
    @inline(__always)
    static func target(_ progress: Progress, total: Int, window: Int) -> Int {
        min(total, (progress.received / frameSize + window) * frameSize)
    }

    /// Checks `chunk`, the next bytes received on `progress`.
    @inline(__always)
    static func accept(_ chunk: UnsafeRawBufferPointer, into progress: inout Progress, streams: Streams, total: Int) throws {
        if progress.received + chunk.count > total {
            throw BenchError.integrity("fd \(progress.fd): \(progress.received + chunk.count) bytes echoed, only \(total) sent")
        }
        if progress.received + chunk.count > progress.sent {
            throw BenchError.integrity(
                "fd \(progress.fd): \(progress.received + chunk.count) bytes echoed, only \(progress.sent) sent so far")
        }
        if !streams.matches(tag: progress.tag, offset: progress.received, chunk) {
            throw BenchError.integrity(
                "fd \(progress.fd): echoed bytes \(progress.received)..<\(progress.received + chunk.count) differ from those sent"
            )
        }
        progress.received += chunk.count
    }

    static func ended(_ progress: Progress, total: Int) -> BenchError {
        .integrity("fd \(progress.fd): the server ended the stream after \(progress.received) of \(total) bytes")
    }

    /// One connection on a blocking socket (SO_RCVTIMEO bounds each wait).
    /// Returns the non-empty reads.
    static func blocking(_ start: Progress, streams: Streams, messages: Int, window: Int, timeout: Double) throws -> Int {
        var progress = start
        var reads = 0
        let total = messages * frameSize
        var wait = timeval(tv_sec: Int(timeout), tv_usec: 0)
        _ = setsockopt(progress.fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let goal = target(progress, total: total, window: window)
            while progress.sent < goal {
                let bytes = streams.slice(tag: progress.tag, offset: progress.sent, count: goal - progress.sent)
                try RawSocket.writeAll(progress.fd, bytes)
                progress.sent += bytes.count
            }
            if progress.received == total { break }
            let n = recv(progress.fd, buffer.baseAddress, buffer.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError.system("recv", errno)
            }
            if n == 0 { throw ended(progress, total: total) }
            reads += 1
            try accept(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), into: &progress, streams: streams, total: total)
        }
        shutdown(progress.fd, Int32(SHUT_WR))
        return reads
    }

    /// Many connections on one thread: non-blocking sockets on an epoll
    /// instance; a connection is watched for writability only while the
    /// kernel refused part of its window. Returns the non-empty reads.
    static func polling(_ start: [Progress], streams: Streams, messages: Int, window: Int, deadline: Box<UInt64>) throws -> Int {
        var all = start
        var reads = 0
        let total = messages * frameSize
        var loop = toby_loop()
        let opened = toby_loop_open(&loop, toby_loop_io_system())
        if opened != 0 { throw BenchError.system("toby_loop_open", -opened) }
        defer { toby_loop_close(&loop) }
        for (index, progress) in all.enumerated() {
            _ = toby_socket_set_nonblocking(progress.fd, 1)
            let rc = toby_loop_add(&loop, progress.fd, UInt64(index), UInt32(TOBY_LOOP_READ))
            if rc != 0 { throw BenchError.system("toby_loop_add", -rc) }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 64)
        defer { buffer.deallocate() }

        /// Sends what the window allows; watches writability if the kernel refuses some.
        func push(_ index: Int) throws {
            let goal = target(all[index], total: total, window: window)
            var blocked = false
            while all[index].sent < goal {
                let bytes = streams.slice(tag: all[index].tag, offset: all[index].sent, count: goal - all[index].sent)
                let n = send(all[index].fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { blocked = true; break }
                    throw BenchError.system("send", errno)
                }
                all[index].sent += n
            }
            if blocked != all[index].wantsWrite {
                all[index].wantsWrite = blocked
                let interest = UInt32(TOBY_LOOP_READ) | (blocked ? UInt32(TOBY_LOOP_WRITE) : 0)
                let rc = toby_loop_modify(&loop, all[index].fd, UInt64(index), interest)
                if rc != 0 { throw BenchError.system("toby_loop_modify", -rc) }
            }
        }

        for index in all.indices { try push(index) }
        var open = all.count
        var events = [toby_loop_event](repeating: toby_loop_event(), count: Int(TOBY_LOOP_MAX_EVENTS))
        while open > 0 {
            let ready = toby_loop_wait(&loop, &events, Int32(events.count), 250)
            if ready < 0 { throw BenchError.system("toby_loop_wait", -ready) }
            if ready == 0 && nowNanoseconds() > deadline.value {
                throw BenchError.timeout("\(open) of \(all.count) client connections unfinished")
            }
            for event in events[0..<Int(ready)] {
                let index = Int(event.token)
                if all[index].received == total { continue }
                if event.events & UInt32(TOBY_LOOP_READ | TOBY_LOOP_HANGUP | TOBY_LOOP_ERROR) != 0 {
                    let n = recv(all[index].fd, buffer.baseAddress, buffer.count, 0)
                    if n == 0 { throw ended(all[index], total: total) }
                    if n < 0 {
                        if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { throw BenchError.system("recv", errno) }
                    } else {
                        reads += 1
                        try accept(
                            UnsafeRawBufferPointer(rebasing: buffer[0..<n]), into: &all[index], streams: streams, total: total)
                    }
                }
                if all[index].received == total {
                    open -= 1
                    _ = toby_loop_remove(&loop, all[index].fd)
                    shutdown(all[index].fd, Int32(SHUT_WR))
                } else {
                    try push(index)
                }
            }
        }
        return reads
    }
}
