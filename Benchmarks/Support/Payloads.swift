/// Test messages with a cheap, checkable pattern.
///
/// Message `seq` of a stream is `messages[seq % period]`: byte 0 is
/// `seq % period`, byte 1 is the stream's tag (the sending thread in the
/// shared-senders scenario), the last byte is 0xEE, the rest 0x5A. The
/// receiver checks count, total bytes, length, and those three bytes, so a
/// broken implementation (lost, reordered, cut or merged frames) fails
/// instead of looking fast.
struct Payloads: Sendable {
    static let lastByte: UInt8 = 0xEE

    let size: Int
    let period: Int
    let tag: UInt8
    let messages: [[UInt8]]

    init(size: Int, tag: UInt8 = 0) {
        precondition(size >= 3, "payloads are at least 3 bytes")
        self.size = size
        self.tag = tag
        // A divisor of 256, so every 256-message batch starts at seq ≡ 0.
        period = size <= 64 << 10 ? 256 : 16
        messages = (0..<period).map { index in
            var message = [UInt8](repeating: 0x5A, count: size)
            message[0] = UInt8(index)
            message[1] = tag
            message[size - 1] = Payloads.lastByte
            return message
        }
    }

    @inline(__always)
    func message(_ seq: Int) -> [UInt8] { messages[seq % period] }

    /// Messages `0..<count` (a batch starting at a multiple of `period`).
    func batch(_ count: Int) -> [[UInt8]] { (0..<count).map { message($0) } }

    /// Frames `0..<frames`, each with its 8-byte little-endian prefix, as
    /// one contiguous byte stream (for the kernel ceiling).
    func framedStream(frames: Int) -> [UInt8] {
        var stream: [UInt8] = []
        stream.reserveCapacity(frames * (size + 8))
        for seq in 0..<frames {
            withUnsafeBytes(of: UInt64(size).littleEndian) { stream.append(contentsOf: $0) }
            stream.append(contentsOf: message(seq))
        }
        return stream
    }
}

/// Checks one stream of messages made by `Payloads`.
struct Checker {
    let size: Int
    let period: Int
    let tag: UInt8
    private(set) var count = 0
    private(set) var bytes = 0
    private(set) var bad = 0
    private(set) var firstProblem: String?

    init(_ payloads: Payloads) {
        size = payloads.size
        period = payloads.period
        tag = payloads.tag
    }

    @inline(__always)
    mutating func check(_ message: UnsafeRawBufferPointer) {
        let n = message.count
        if n != size || message[0] != UInt8(truncatingIfNeeded: count % period) || message[1] != tag
            || message[n - 1] != Payloads.lastByte
        {
            noteProblem(message)
        }
        count += 1
        bytes += n
    }

    @inline(__always)
    mutating func check(_ message: [UInt8]) {
        message.withUnsafeBytes { check($0) }
    }

    private mutating func noteProblem(_ message: UnsafeRawBufferPointer) {
        bad += 1
        if firstProblem == nil {
            let head = message.prefix(4).map { String($0) }.joined(separator: ",")
            firstProblem =
                "message #\(count) (tag \(tag)): \(message.count) bytes [\(head)…], expected \(size) bytes starting \(count % period),\(tag)"
        }
    }

    /// Throws unless exactly `expected` good messages arrived.
    func verify(expected: Int) throws {
        if let firstProblem { throw BenchError.integrity("\(bad) bad messages; first: \(firstProblem)") }
        if count != expected || bytes != expected * size {
            throw BenchError.integrity("got \(count) messages / \(bytes) bytes, expected \(expected) / \(expected * size)")
        }
    }
}

/// Checks interleaved streams whose messages carry their stream's tag in byte 1.
struct TaggedChecker {
    private(set) var checkers: [Checker]
    private(set) var stray = 0
    private(set) var total = 0

    init(streams: Int, size: Int) {
        checkers = (0..<streams).map { Checker(Payloads(size: size, tag: UInt8($0))) }
    }

    @inline(__always)
    mutating func check(_ message: UnsafeRawBufferPointer) {
        total += 1
        let tag = message.count > 1 ? Int(message[1]) : Int.max
        if tag < checkers.count { checkers[tag].check(message) } else { stray += 1 }
    }

    @inline(__always)
    mutating func check(_ message: [UInt8]) {
        message.withUnsafeBytes { check($0) }
    }

    func verify(expectedPerStream: Int) throws {
        if stray > 0 { throw BenchError.integrity("\(stray) messages with an unknown stream tag") }
        for checker in checkers { try checker.verify(expected: expectedPerStream) }
    }
}

/// Counts raw stream bytes for the kernel ceiling (no parsing), checking the
/// very last byte of the stream.
struct StreamCounter {
    private(set) var bytes = 0
    private(set) var lastByte: UInt8 = 0

    @inline(__always)
    mutating func add(_ chunk: UnsafeRawBufferPointer) {
        guard !chunk.isEmpty else { return }
        bytes += chunk.count
        lastByte = chunk[chunk.count - 1]
    }

    func verify(expectedBytes: Int) throws {
        if bytes != expectedBytes { throw BenchError.integrity("got \(bytes) stream bytes, expected \(expectedBytes)") }
        if lastByte != Payloads.lastByte {
            throw BenchError.integrity("stream ends with \(lastByte), expected \(Payloads.lastByte)")
        }
    }
}
