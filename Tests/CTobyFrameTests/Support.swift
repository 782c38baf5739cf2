// Test support for the C core: a scripted fake `toby_io`, an independent
// reference encoder/decoder, and a driver that runs a toby_reader to the end.
import CTobyFrame
import CTobyFrame.Testing
import XCTest

import Glibc

let fakeFD: Int32 = 42
let msgNoSignal = Int32(MSG_NOSIGNAL)
let msgDontWait = Int32(MSG_DONTWAIT)

let littleEndian = TOBY_LITTLE_ENDIAN
let bigEndian = TOBY_BIG_ENDIAN
let bothOrders = [TOBY_LITTLE_ENDIAN, TOBY_BIG_ENDIAN]

let statusNeedMore = Int32(TOBY_NEED_MORE)
let statusFrame = Int32(TOBY_FRAME)
let statusDirect = Int32(TOBY_FRAME_DIRECT)
let statusEnd = Int32(TOBY_END)

// MARK: - Reference encoding (written from the wire format, not the C code)

func referencePrefix(_ length: UInt64, _ order: toby_byte_order) -> [UInt8] {
    var le = [UInt8]()
    var v = length
    for _ in 0..<8 {
        le.append(UInt8(truncatingIfNeeded: v))
        v >>= 8
    }
    return order == TOBY_BIG_ENDIAN ? le.reversed() : le
}

func referenceEncode(_ frames: [[UInt8]], _ order: toby_byte_order) -> [UInt8] {
    var out = [UInt8]()
    for f in frames {
        out += referencePrefix(UInt64(f.count), order)
        out += f
    }
    return out
}

enum Outcome: Equatable, CustomStringConvertible {
    case end
    case tooLarge(length: UInt64, prefix: [UInt8])
    case truncated(expected: UInt64, received: UInt64)
    case ioError(Int32)

    var description: String {
        switch self {
        case .end: return "END"
        case let .tooLarge(l, p): return "EFRAMETOOLARGE(length: \(l), prefix: \(hex(p)))"
        case let .truncated(e, r): return "ETRUNCATED(expected: \(e), received: \(r))"
        case let .ioError(e): return "io error \(e)"
        }
    }
}

/// The simplest possible decoder of a complete stream that ends with EOF.
func referenceDecode(
    _ s: [UInt8], _ order: toby_byte_order, maxFrame: UInt64
)
    -> (frames: [[UInt8]], outcome: Outcome)
{
    var frames = [[UInt8]]()
    var i = 0
    while true {
        let left = s.count - i
        if left == 0 { return (frames, .end) }
        if left < 8 { return (frames, .truncated(expected: 8, received: UInt64(left))) }
        var length: UInt64 = 0
        let p = Array(s[i..<(i + 8)])
        for b in (order == TOBY_BIG_ENDIAN ? p : p.reversed()) {
            length = length << 8 | UInt64(b)
        }
        if length > maxFrame { return (frames, .tooLarge(length: length, prefix: p)) }
        if UInt64(left) < 8 + length {
            return (frames, .truncated(expected: 8 + length, received: UInt64(left)))
        }
        frames.append(Array(s[(i + 8)..<(i + 8 + Int(length))]))
        i += 8 + Int(length)
    }
}

func hex(_ b: [UInt8]) -> String {
    b.map { String(format: "%02x", $0) }.joined(separator: " ")
}

func prefixBytes(_ f: toby_frame) -> [UInt8] {
    withUnsafeBytes(of: f.prefix) { Array($0) }
}

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

func payload(_ n: Int, seed: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ 1) }
}

// MARK: - Scripted fake toby_io

/// A fake socket. recvmsg serves bytes from `recvScript` (a chunk is
/// scattered over the iovecs; what does not fit stays at the front of the
/// script), `.error(e)` entries return -e once, `.eof` (and an exhausted
/// script) returns 0. sendmsg accepts the number of bytes the front of
/// `sendScript` allows (or `defaultAccept` when the script is empty) and
/// records them in `written`.
final class ScriptedIO {
    enum Recv {
        case data([UInt8])
        case error(Int32)  // a positive errno value; returned negated
        case eof
    }

    enum Send {
        case accept(Int)
        case error(Int32)  // a positive errno value; returned negated
    }

    var recvScript: [Recv] = []
    var sendScript: [Send] = []
    var defaultAccept = Int.max

    private(set) var written: [UInt8] = []
    private(set) var recvCalls = 0
    private(set) var recvIovCounts: [Int] = []
    private(set) var recvFlags: [Int32] = []
    private(set) var sendCalls = 0
    private(set) var sendIovCounts: [Int] = []
    private(set) var sendFlags: [Int32] = []
    private(set) var sendResults: [Int] = []
    private(set) var badFD = false
    private(set) var zeroLengthIov = false

    let table: UnsafeMutablePointer<toby_io>

    init(recv: [Recv] = [], send: [Send] = []) {
        recvScript = recv
        sendScript = send
        table = UnsafeMutablePointer<toby_io>.allocate(capacity: 1)
        table.initialize(to: toby_io(recvmsg: scriptedRecv, sendmsg: scriptedSend, ctx: nil))
        table.pointee.ctx = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { table.deallocate() }

    var io: UnsafePointer<toby_io> { UnsafePointer(table) }

    fileprivate func recv(_ fd: Int32, _ msg: UnsafeMutablePointer<msghdr>, _ flags: Int32) -> Int {
        recvCalls += 1
        if fd != fakeFD { badFD = true }
        let iovs = UnsafeBufferPointer(start: msg.pointee.msg_iov, count: Int(msg.pointee.msg_iovlen))
        recvIovCounts.append(iovs.count)
        recvFlags.append(flags)
        if iovs.contains(where: { $0.iov_len == 0 }) { zeroLengthIov = true }
        guard let step = recvScript.first else { return 0 }
        switch step {
        case .eof:
            return 0
        case let .error(e):
            recvScript.removeFirst()
            return -Int(e)
        case let .data(chunk):
            precondition(!chunk.isEmpty, "an empty data chunk would read as EOF")
            var copied = 0
            for v in iovs where copied < chunk.count {
                let n = min(v.iov_len, chunk.count - copied)
                chunk.withUnsafeBytes { src in
                    v.iov_base!.copyMemory(from: src.baseAddress! + copied, byteCount: n)
                }
                copied += n
            }
            if copied == chunk.count {
                recvScript.removeFirst()
            } else {
                recvScript[0] = .data(Array(chunk[copied...]))
            }
            return copied
        }
    }

    fileprivate func send(_ fd: Int32, _ msg: UnsafePointer<msghdr>, _ flags: Int32) -> Int {
        sendCalls += 1
        if fd != fakeFD { badFD = true }
        let iovs = UnsafeBufferPointer(start: msg.pointee.msg_iov, count: Int(msg.pointee.msg_iovlen))
        sendIovCounts.append(iovs.count)
        sendFlags.append(flags)
        if iovs.contains(where: { $0.iov_len == 0 }) { zeroLengthIov = true }
        var allow = defaultAccept
        if let step = sendScript.first {
            sendScript.removeFirst()
            switch step {
            case let .accept(n): allow = n
            case let .error(e):
                sendResults.append(-Int(e))
                return -Int(e)
            }
        }
        var taken = 0
        for v in iovs where taken < allow {
            let n = min(v.iov_len, allow - taken)
            written += UnsafeRawBufferPointer(start: v.iov_base, count: n)
            taken += n
        }
        sendResults.append(taken)
        return taken
    }
}

private func scriptedRecv(
    _ ctx: UnsafeMutableRawPointer?, _ fd: Int32,
    _ msg: UnsafeMutablePointer<msghdr>?, _ flags: Int32
) -> Int {
    Unmanaged<ScriptedIO>.fromOpaque(ctx!).takeUnretainedValue().recv(fd, msg!, flags)
}

private func scriptedSend(
    _ ctx: UnsafeMutableRawPointer?, _ fd: Int32,
    _ msg: UnsafePointer<msghdr>?, _ flags: Int32
) -> Int {
    Unmanaged<ScriptedIO>.fromOpaque(ctx!).takeUnretainedValue().send(fd, msg!, flags)
}

// MARK: - Reader harness

/// A toby_reader over a ScriptedIO with its own ring.
final class ReaderBox {
    let io: ScriptedIO
    let reader = UnsafeMutablePointer<toby_reader>.allocate(capacity: 1)
    let ring: UnsafeMutablePointer<UInt8>
    let capacity: Int

    init(capacity: Int, maxFrame: UInt64, order: toby_byte_order, recv: [ScriptedIO.Recv]) {
        self.capacity = capacity
        io = ScriptedIO(recv: recv)
        ring = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        ring.initialize(repeating: 0xEE, count: capacity)
        let rc = toby_reader_init(reader, ring, capacity, maxFrame, order, fakeFD, io.io)
        precondition(rc == 0, "toby_reader_init failed: \(rc)")
    }

    deinit {
        reader.deallocate()
        ring.deallocate()
    }

    func next(_ f: inout toby_frame) -> Int32 { toby_reader_next(reader, &f) }
    func fill(_ flags: Int32 = 0) -> Int { toby_reader_fill(reader, flags) }
    func consume() { toby_reader_consume(reader) }
    var buffered: Int { toby_reader_buffered(reader) }
}

struct DrainResult {
    var frames: [[UInt8]] = []
    var status: Int32 = 0
    var failure = toby_frame()
    var fillResults: [Int] = []
    var directFillResults: [Int] = []
    var wrappedFrames = 0
    var directFrames = 0
    var directCallsWithRingSpace = 0
    var bufferedAfterDirect: [Int] = []

    var outcome: Outcome {
        switch status {
        case statusEnd: return .end
        case TOBY_EFRAMETOOLARGE: return .tooLarge(length: failure.length, prefix: prefixBytes(failure))
        case TOBY_ETRUNCATED: return .truncated(expected: failure.expected, received: failure.received)
        default: return .ioError(status)
        }
    }
}

func segmentBytes(_ f: toby_frame) -> [UInt8] {
    var out = [UInt8]()
    if f.len.0 > 0 { out += UnsafeBufferPointer(start: f.data.0, count: f.len.0) }
    if f.len.1 > 0 { out += UnsafeBufferPointer(start: f.data.1, count: f.len.1) }
    return out
}

/// Runs the reader until TOBY_END or an error: consumes TOBY_FRAMEs, reads
/// TOBY_FRAME_DIRECT payloads through direct_take + direct_fill, fills on
/// TOBY_NEED_MORE. -EAGAIN from a fill is retried (the script moves on).
/// With `take` > 0, toby_reader_take (at most `take` frames a call) runs
/// before every next(), as an event loop does.
func drain(
    _ box: ReaderBox, fillFlags: Int32 = 0, take: Int = 0, file: StaticString = #filePath, line: UInt = #line
)
    -> DrainResult
{
    var res = DrainResult()
    var f = toby_frame()
    var steps = 0
    var spans = [toby_span](repeating: toby_span(), count: max(take, 1))
    while true {
        steps += 1
        if steps > 10_000_000 {
            XCTFail("reader does not terminate", file: file, line: line)
            return res
        }
        if take > 0 {
            let n = spans.withUnsafeMutableBufferPointer { toby_reader_take(box.reader, $0.baseAddress, take) }
            XCTAssertLessThanOrEqual(n, take, file: file, line: line)
            for span in spans[0..<n] {
                res.frames.append(Array(UnsafeBufferPointer(start: span.data, count: span.len)))
                // The prefix lies right before the payload.
                let prefix = Array(UnsafeBufferPointer(start: span.data - 8, count: 8))
                XCTAssertEqual(prefix, referencePrefix(UInt64(span.len), box.reader.pointee.order), file: file, line: line)
            }
        }
        let rc = box.next(&f)
        switch rc {
        case statusFrame:
            let bytes = segmentBytes(f)
            XCTAssertEqual(UInt64(bytes.count), f.length, file: file, line: line)
            if f.len.1 > 0 { res.wrappedFrames += 1 }
            res.frames.append(bytes)
            box.consume()
        case statusDirect:
            res.directFrames += 1
            let total = Int(f.length)
            XCTAssertGreaterThan(total, box.capacity - 8, "direct frames are the ones that cannot fit", file: file, line: line)
            let already = segmentBytes(f)
            var buf = [UInt8](repeating: 0, count: total)
            var pos = 0
            var failed = false
            buf.withUnsafeMutableBytes { dst in
                let taken = toby_reader_direct_take(box.reader, dst.baseAddress!, total)
                XCTAssertEqual(taken, already.count, "take copies what next() described", file: file, line: line)
                XCTAssertEqual(Array(dst[0..<taken]), already, file: file, line: line)
                pos = taken
                while pos < total {
                    XCTAssertEqual(toby_reader_direct_remaining(box.reader), UInt64(total - pos), file: file, line: line)
                    let ringFreeBefore = box.capacity - box.buffered
                    let k = toby_reader_direct_fill(box.reader, dst.baseAddress! + pos, total - pos, fillFlags)
                    res.directFillResults.append(k)
                    if k > 0 {
                        XCTAssertLessThanOrEqual(k, total - pos, file: file, line: line)
                        pos += k
                        if ringFreeBefore > 0 && box.io.recvIovCounts.last ?? 0 > 1 {
                            res.directCallsWithRingSpace += 1
                        }
                    } else if k == -Int(EAGAIN) {
                        continue
                    } else {
                        failed = true
                        break
                    }
                }
            }
            if !failed {
                XCTAssertEqual(toby_reader_direct_remaining(box.reader), 0, file: file, line: line)
                res.bufferedAfterDirect.append(box.buffered)
                res.frames.append(buf)
            }
        case statusNeedMore:
            let k = box.fill(fillFlags)
            res.fillResults.append(k)
            if k == -Int(ENOBUFS) {
                XCTFail("fill found the ring full while next() asked for more", file: file, line: line)
                res.status = Int32(k)
                return res
            }
        default:
            res.status = rc
            res.failure = f
            return res
        }
    }
}

// MARK: - Writer harness

/// Payloads in stable heap memory, described as toby_out records.
final class OutFrames {
    let payloads: [[UInt8]]
    private var buffers: [UnsafeMutablePointer<UInt8>] = []
    private(set) var outs: [toby_out] = []

    /// Zero-length payloads get a NULL data pointer when `nullEmpty`.
    init(_ payloads: [[UInt8]], nullEmpty: Bool = true) {
        self.payloads = payloads
        for p in payloads {
            if p.isEmpty && nullEmpty {
                outs.append(toby_out(data: nil, len: 0))
                continue
            }
            let b = UnsafeMutablePointer<UInt8>.allocate(capacity: max(p.count, 1))
            b.initialize(repeating: 0xCC, count: max(p.count, 1))
            p.withUnsafeBufferPointer { src in
                if !src.isEmpty { b.update(from: src.baseAddress!, count: src.count) }
            }
            buffers.append(b)
            outs.append(toby_out(data: UnsafeRawPointer(b), len: p.count))
        }
    }

    deinit { buffers.forEach { $0.deallocate() } }
}

final class WriterBox {
    let io: ScriptedIO
    let writer = UnsafeMutablePointer<toby_writer>.allocate(capacity: 1)

    init(order: toby_byte_order, send: [ScriptedIO.Send] = []) {
        io = ScriptedIO(send: send)
        let rc = toby_writer_init(writer, order, fakeFD, io.io)
        precondition(rc == 0)
    }

    deinit { writer.deallocate() }

    func write(_ frames: OutFrames, index: inout Int, offset: inout UInt64, flags: Int32 = 0) -> Int32 {
        frames.outs.withUnsafeBufferPointer { p in
            toby_writer_write(writer, p.baseAddress, p.count, &index, &offset, flags)
        }
    }

    /// `toby_writer_write_raw`: the items are sent as they are.
    func writeRaw(_ items: OutFrames, index: inout Int, offset: inout UInt64, flags: Int32 = 0) -> Int32 {
        items.outs.withUnsafeBufferPointer { p in
            toby_writer_write_raw(writer, p.baseAddress, p.count, &index, &offset, flags)
        }
    }
}
