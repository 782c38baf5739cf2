#if canImport(Glibc)
import Glibc
#endif

/// What a competent Swift developer writes without a C core: blocking
/// sockets with TCP_NODELAY; to send, write the 8-byte little-endian prefix
/// and then the payload (two write calls); to receive, read exactly 8 bytes,
/// then exactly N into a new [UInt8]. Loops over partial reads and writes.
enum PureSwift {
    static let maxFrame = 64 << 20

    static func send(_ fd: Int32, _ message: [UInt8]) throws {
        var prefix = UInt64(message.count).littleEndian
        try withUnsafeBytes(of: &prefix) { try RawSocket.writeAll(fd, $0) }
        try message.withUnsafeBytes { try RawSocket.writeAll(fd, $0) }
    }

    /// The next message, or nil at a clean end of stream.
    static func receive(_ fd: Int32) throws -> [UInt8]? {
        var prefix: UInt64 = 0
        guard try withUnsafeMutableBytes(of: &prefix, { try RawSocket.readExactly(fd, $0) }) else { return nil }
        let length = UInt64(littleEndian: prefix)
        guard length <= maxFrame else { throw BenchError.integrity("frame of \(length) bytes") }
        return try [UInt8](unsafeUninitializedCapacity: Int(length)) { buffer, initialized in
            if length > 0 {
                guard try RawSocket.readExactly(fd, UnsafeMutableRawBufferPointer(buffer)) else {
                    throw BenchError.integrity("stream ended before a payload")
                }
            }
            initialized = Int(length)
        }
    }

    /// Shuts both ends down first, which also wakes a thread still blocked
    /// on them after a failed run, then closes them.
    static func close(_ pairs: [(client: Int32, server: Int32)]) {
        for pair in pairs {
            shutdown(pair.client, Int32(SHUT_RDWR))
            shutdown(pair.server, Int32(SHUT_RDWR))
            Glibc.close(pair.client)
            Glibc.close(pair.server)
        }
    }

    // MARK: Scenarios

    static func oneWay(size: Int, count: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: size)
        let pair = try RawSocket.pairs(1)[0]
        defer { close([pair]) }
        let nanoseconds = try runThreads(
            timed: [
                { for seq in 0..<count { try send(pair.client, payloads.message(seq)) } },
                {
                    var check = Checker(payloads)
                    for _ in 0..<count {
                        guard let message = try receive(pair.server) else { break }
                        check.check(message)
                    }
                    try check.verify(expected: count)
                },
            ], timeout: timeout)
        return .throughput(messages: count, size: size, nanoseconds: nanoseconds)
    }

    /// Echo until the peer closes: read one, write one.
    static func echo(_ fd: Int32) throws {
        while let message = try receive(fd) { try send(fd, message) }
        shutdown(fd, Int32(SHUT_WR))
    }

    static func pingPong(count: Int, warmup: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let pair = try RawSocket.pairs(1)[0]
        defer { close([pair]) }
        let recorder = Box(LatencyRecorder(warmup: warmup))
        _ = try runThreads(
            timed: [
                {
                    var latencies = LatencyRecorder(warmup: warmup)
                    var check = Checker(payloads)
                    for seq in 0..<(warmup + count) {
                        let start = nowNanoseconds()
                        try send(pair.client, payloads.message(seq))
                        guard let reply = try receive(pair.client) else { break }
                        latencies.record(nowNanoseconds() - start)
                        check.check(reply)
                    }
                    shutdown(pair.client, Int32(SHUT_WR))
                    try check.verify(expected: warmup + count)
                    recorder.value = latencies
                }
            ],
            background: [{ try echo(pair.server) }],
            timeout: timeout)
        return try recorder.value.sample(expected: count)
    }

    /// One thread keeps `window` outstanding: read a reply, write a message.
    static func pipelined(count: Int, window: Int, timeout: Double) throws -> Sample {
        let payloads = Payloads(size: 64)
        let pair = try RawSocket.pairs(1)[0]
        defer { close([pair]) }
        let nanoseconds = try runThreads(
            timed: [
                {
                    var check = Checker(payloads)
                    var sent = 0
                    while sent < min(window, count) {
                        try send(pair.client, payloads.message(sent))
                        sent += 1
                    }
                    while check.count < count {
                        guard let reply = try receive(pair.client) else { break }
                        check.check(reply)
                        if sent < count {
                            try send(pair.client, payloads.message(sent))
                            sent += 1
                        }
                    }
                    shutdown(pair.client, Int32(SHUT_WR))
                    try check.verify(expected: count)
                }
            ],
            background: [{ try echo(pair.server) }],
            timeout: timeout)
        return .throughput(messages: count, size: 64, nanoseconds: nanoseconds)
    }

    /// `threads` threads share one socket, a lock around the two writes.
    static func sharedSenders(threads: Int, perThread: Int, timeout: Double) throws -> Sample {
        let pair = try RawSocket.pairs(1)[0]
        defer { close([pair]) }
        let lock = Lock()
        let checker = Box(TaggedChecker(streams: threads, size: 64))
        var bodies: [@Sendable () throws -> Void] = (0..<threads).map { thread in
            let payloads = Payloads(size: 64, tag: UInt8(thread))
            return {
                for seq in 0..<perThread {
                    lock.lock()
                    defer { lock.unlock() }
                    try send(pair.client, payloads.message(seq))
                }
            }
        }
        bodies.append {
            var check = TaggedChecker(streams: threads, size: 64)
            for _ in 0..<(threads * perThread) {
                guard let message = try receive(pair.server) else { break }
                check.check(message)
            }
            checker.value = check
        }
        let writes = WriteSyscalls.start()
        let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
        try checker.value.verify(expectedPerStream: perThread)
        return .shared(messages: threads * perThread, nanoseconds: nanoseconds, writes: writes)
    }

    /// A receiving thread per connection; sender threads own slices of the
    /// connections and send 256 messages on each in turn.
    static func manyConnections(connections count: Int, perConnection: Int, senderThreads: Int, timeout: Double) throws -> Sample
    {
        let payloads = Payloads(size: 64)
        let pairs = try RawSocket.pairs(count)
        defer { close(pairs) }
        var bodies: [@Sendable () throws -> Void] = (0..<senderThreads).map { thread in
            let mine = stride(from: thread, to: pairs.count, by: senderThreads).map { pairs[$0].client }
            return {
                var sent = 0
                while sent < perConnection {
                    let n = min(256, perConnection - sent)
                    for fd in mine {
                        for seq in sent..<(sent + n) { try send(fd, payloads.message(seq)) }
                    }
                    sent += n
                }
            }
        }
        for pair in pairs {
            bodies.append {
                var check = Checker(payloads)
                for _ in 0..<perConnection {
                    guard let message = try receive(pair.server) else { break }
                    check.check(message)
                }
                try check.verify(expected: perConnection)
            }
        }
        let nanoseconds = try runThreads(timed: bodies, timeout: timeout)
        return .throughput(messages: count * perConnection, size: 64, nanoseconds: nanoseconds)
    }
}
