#if canImport(Glibc)
import Glibc
#endif

/// The kernel ceiling: pre-framed bytes written in chunks of up to 4 MiB
/// and read back in 4 MiB reads with no parsing; only the byte count and
/// the stream's last byte are checked.
enum Kernel {
    /// Bytes per write and per read. 4 MiB measured best on this machine
    /// (256 KiB: ~3.1 GB/s, 1 MiB: ~3.7 GB/s, 4 MiB: ~4.4 GB/s one-way at
    /// 1 MiB payloads), so the ceiling is a ceiling.
    static let chunk = 4 << 20

    static let label = "\(chunk >> 20) MiB chunks"

    /// A repeating unit of whole frames, at least `chunk` bytes, that starts
    /// and ends on a frame boundary and on a multiple of the pattern period.
    struct Stream: @unchecked Sendable {
        let unit: [UInt8]
        let frameSize: Int

        init(_ payloads: Payloads) {
            frameSize = payloads.size + 8
            let periodBytes = payloads.period * frameSize
            let periods = max(1, (Kernel.chunk + periodBytes - 1) / periodBytes)
            unit = payloads.framedStream(frames: periods * payloads.period)
        }

        /// Writes the first `frames` frames of the endless stream.
        func write(frames: Int, to fd: Int32) throws {
            var remaining = frames * frameSize
            var offset = 0
            try unit.withUnsafeBytes { unit in
                while remaining > 0 {
                    let n = min(Kernel.chunk, remaining, unit.count - offset)
                    try RawSocket.writeAll(fd, UnsafeRawBufferPointer(rebasing: unit[offset..<(offset + n)]))
                    remaining -= n
                    offset = (offset + n) % unit.count
                }
            }
        }
    }

    /// Reads until `bytes` arrived; verifies count and last byte.
    static func drain(_ fd: Int32, bytes: Int) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var counter = StreamCounter()
        while counter.bytes < bytes {
            let n = try RawSocket.readSome(fd, buffer)
            if n == 0 { break }
            counter.add(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        try counter.verify(expectedBytes: bytes)
    }

    // MARK: Scenarios

    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        let stream = Stream(Payloads(size: size))
        let pair = try RawSocket.pairs(1)[0]
        defer { PureSwift.close([pair]) }
        let nanoseconds = try runThreads(
            timed: [
                { try stream.write(frames: count, to: pair.client) },
                { try drain(pair.server, bytes: count * stream.frameSize) },
            ], timeout: timeout)
        return .throughput(messages: count, size: size, nanoseconds: nanoseconds)
    }

    /// Echoes raw bytes until the peer closes.
    static func rawEcho(_ fd: Int32) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = try RawSocket.readSome(fd, buffer)
            if n == 0 { break }
            try RawSocket.writeAll(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        shutdown(fd, Int32(SHUT_WR))
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let frame = Payloads(size: 64).framedStream(frames: 1)
        let pair = try RawSocket.pairs(1)[0]
        defer { PureSwift.close([pair]) }
        let recorder = Box(LatencyRecorder(warmup: warmup))
        _ = try runThreads(
            timed: [
                {
                    var latencies = LatencyRecorder(warmup: warmup)
                    var reply = [UInt8](repeating: 0, count: frame.count)
                    for _ in 0..<(warmup + count) {
                        let start = nowNanoseconds()
                        try frame.withUnsafeBytes { try RawSocket.writeAll(pair.client, $0) }
                        guard try reply.withUnsafeMutableBytes({ try RawSocket.readExactly(pair.client, $0) }) else { break }
                        latencies.record(nowNanoseconds() - start)
                    }
                    shutdown(pair.client, Int32(SHUT_WR))
                    if reply.last != Payloads.lastByte { throw BenchError.integrity("echoed frame ends with \(reply.last ?? 0)") }
                    recorder.value = latencies
                }
            ],
            background: [
                {
                    var frame = [UInt8](repeating: 0, count: frame.count)
                    while try frame.withUnsafeMutableBytes({ try RawSocket.readExactly(pair.server, $0) }) {
                        try frame.withUnsafeBytes { try RawSocket.writeAll(pair.server, $0) }
                    }
                    shutdown(pair.server, Int32(SHUT_WR))
                }
            ],
            timeout: timeout)
        return try recorder.value.sample(expected: count)
    }

    /// The client writes as many frames as whole replies came back.
    static func pipelined(count: Int, window: Int, timeout: Double) throws -> Sample {
        let frames = Payloads(size: 64).framedStream(frames: window)
        let frameSize = 72
        let pair = try RawSocket.pairs(1)[0]
        defer { PureSwift.close([pair]) }
        let nanoseconds = try runThreads(
            timed: [
                {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
                    defer { buffer.deallocate() }
                    var counter = StreamCounter()
                    var sent = min(window, count)
                    var answered = 0
                    try frames.withUnsafeBytes { frames in
                        try RawSocket.writeAll(pair.client, UnsafeRawBufferPointer(rebasing: frames[0..<(sent * frameSize)]))
                        while counter.bytes < count * frameSize {
                            let n = try RawSocket.readSome(pair.client, buffer)
                            if n == 0 { break }
                            counter.add(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                            let complete = counter.bytes / frameSize
                            let more = min(complete - answered, count - sent)
                            answered = complete
                            if more > 0 {
                                try RawSocket.writeAll(
                                    pair.client, UnsafeRawBufferPointer(rebasing: frames[0..<(more * frameSize)]))
                                sent += more
                            }
                        }
                    }
                    shutdown(pair.client, Int32(SHUT_WR))
                    try counter.verify(expectedBytes: count * frameSize)
                }
            ],
            background: [{ try rawEcho(pair.server) }],
            timeout: timeout)
        return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
    }

    /// `threads` threads write their frames in 4 MiB chunks under a lock.
    static func sharedSenders(threads: Int, perThread: Int, timeout: Double) throws -> Sample {
        let pair = try RawSocket.pairs(1)[0]
        defer { PureSwift.close([pair]) }
        let lock = Lock()
        let total = threads * perThread * 72
        var bodies: [@Sendable () throws -> Void] = (0..<threads).map { thread in
            let stream = Stream(Payloads(size: 64, tag: UInt8(thread)))
            return {
                var remaining = perThread * stream.frameSize
                var offset = 0
                try stream.unit.withUnsafeBytes { unit in
                    while remaining > 0 {
                        // Whole frames per chunk, so chunks of threads never split a frame.
                        let n = min(chunk / stream.frameSize * stream.frameSize, remaining, unit.count - offset)
                        try lock.withLock {
                            try RawSocket.writeAll(pair.client, UnsafeRawBufferPointer(rebasing: unit[offset..<(offset + n)]))
                        }
                        remaining -= n
                        offset = (offset + n) % unit.count
                    }
                }
            }
        }
        bodies.append { try drain(pair.server, bytes: total) }
        let writes = WriteSyscalls.start()
        let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
        return .shared(messages: threads * perThread, nanoseconds: nanoseconds, writes: writes)
    }

    /// Sender threads write each connection's whole stream; receiver threads
    /// `poll` their slice of the connections and read 4 MiB at a time.
    static func manyConnections(connections count: Int, perConnection: Int, senderThreads: Int, timeout: Double) throws -> Sample
    {
        let stream = Stream(Payloads(size: 64))
        let pairs = try RawSocket.pairs(count)
        defer { PureSwift.close(pairs) }
        let perStream = perConnection * stream.frameSize
        var bodies: [@Sendable () throws -> Void] = []
        for thread in 0..<senderThreads {
            let mine = stride(from: thread, to: count, by: senderThreads).map { pairs[$0] }
            bodies.append { for pair in mine { try stream.write(frames: perConnection, to: pair.client) } }
            bodies.append { try pollDrain(mine.map(\.server), bytesEach: perStream) }
        }
        let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
        return .throughput(messages: count * perConnection, size: 64, nanoseconds: nanoseconds)
    }

    static func pollDrain(_ fds: [Int32], bytesEach: Int) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var counters = [StreamCounter](repeating: StreamCounter(), count: fds.count)
        var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var open = fds.count
        while open > 0 {
            let ready = poll(&polls, nfds_t(polls.count), 10_000)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw BenchError.system("poll", ready == 0 ? ETIMEDOUT : errno) }
            for i in polls.indices where polls[i].revents != 0 {
                let n = try RawSocket.readSome(polls[i].fd, buffer)
                if n > 0 { counters[i].add(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
                if n == 0 || counters[i].bytes >= bytesEach {
                    polls[i].fd = -1  // ignored by poll from now on
                    open -= 1
                }
            }
        }
        for counter in counters { try counter.verify(expectedBytes: bytesEach) }
    }
}
