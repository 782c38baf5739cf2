import CTobyFrame
import Glibc

/// A connection's framed bytes waiting for the socket, in order.
///
/// Three kinds of chunk share one queue:
/// - `.inline(n)`: the next `n` bytes of the inline buffer, where small
///   frames are copied with their prefix. For small frames one `memcpy` is
///   cheaper than the kernel walking an extra iovec, and consecutive ones
///   leave as one vector (`TOBY_WRITER_COALESCE`, the C writer's rule).
/// - `.owned(array)`: a large payload (or a frame's bytes) kept alive by its
///   array: retained, never copied.
/// - `.borrowed(bytes)`: already framed bytes lent by a reader's ring during
///   a batch (a forwarded frame). Valid only until the batch ends: the loop
///   flushes right after it and turns what is left into `.owned` copies
///   (`detachBorrowed`), so no pointer into a ring outlives its batch.
///
/// The inline buffer is taken from the loop's pool on first use and given
/// back when the queue drains, so an idle connection holds no buffer.
///
/// Loop-thread only.
struct OutputQueue {
    enum Chunk {
        case inline(Int)
        case owned([UInt8])
        case borrowed(UnsafeRawBufferPointer)
    }

    /// Payloads up to this size are copied inline with their prefix: the
    /// C writer's threshold, the one rule for copying small frames together.
    static let inlineLimit = Int(TOBY_WRITER_COALESCE)

    private(set) var chunks: [Chunk] = []
    private var head = 0  // chunks[..<head] are sent
    private var headOffset = 0  // bytes of chunks[head] already sent
    private(set) var pendingBytes = 0
    private(set) var hasBorrowed = false

    private var inlineBase: UnsafeMutableRawPointer?
    private var inlineCapacity = 0
    private var inlineRead = 0  // first unsent inline byte
    private var inlineWrite = 0  // one past the last inline byte
    private var inlineFromPool = false

    var isEmpty: Bool { pendingBytes == 0 }

    // MARK: Appending

    /// Appends a frame whose payload is copied (small) or kept (large).
    mutating func append(payload bytes: UnsafeRawBufferPointer, order: toby_byte_order, pool: BufferPool) {
        if bytes.count <= OutputQueue.inlineLimit {
            let destination = reserveInline(Int(TOBY_PREFIX_SIZE) + bytes.count, pool: pool)
            toby_prefix_encode(UInt64(bytes.count), order, destination.assumingMemoryBound(to: UInt8.self))
            if let base = bytes.baseAddress, bytes.count > 0 {
                (destination + Int(TOBY_PREFIX_SIZE)).copyMemory(from: base, byteCount: bytes.count)
            }
            commitInline(Int(TOBY_PREFIX_SIZE) + bytes.count)
        } else {
            appendPrefix(bytes.count, order: order, pool: pool)
            append(chunk: .owned([UInt8](bytes)), bytes: bytes.count)
        }
    }

    /// Appends a frame whose payload array is retained, not copied, when large.
    mutating func append(payload array: [UInt8], order: toby_byte_order, pool: BufferPool) {
        if array.count <= OutputQueue.inlineLimit {
            array.withUnsafeBytes { append(payload: $0, order: order, pool: pool) }
        } else {
            appendPrefix(array.count, order: order, pool: pool)
            append(chunk: .owned(array), bytes: array.count)
        }
    }

    /// Appends bytes that are already framed and lent for the current batch.
    /// Adjacent lent ranges merge, so echoing a whole batch of frames from a
    /// ring costs one iovec.
    mutating func append(borrowedFrame bytes: UnsafeRawBufferPointer, pool: BufferPool) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if head < chunks.count, case .borrowed(let last) = chunks[chunks.count - 1],
            let lastBase = last.baseAddress, lastBase + last.count == base
        {
            chunks[chunks.count - 1] = .borrowed(UnsafeRawBufferPointer(start: lastBase, count: last.count + bytes.count))
            pendingBytes += bytes.count
            return
        }
        hasBorrowed = true
        append(chunk: .borrowed(bytes), bytes: bytes.count)
    }

    /// Appends every message of a lent batch: its frames straight from the
    /// ring when they are contiguous there in `order`, else re-framed.
    /// One call per batch, so the owner's exclusive access is checked once.
    /// Returns the index of the first message over `limit` (nothing from it
    /// on is queued), or nil.
    mutating func append(forwarding messages: TobyMessages, order: toby_byte_order, limit: Int, pool: BufferPool) -> Int? {
        // Consecutive ring frames are adjacent in memory: gather each run of
        // them into one range first, then queue the range once.
        var runStart: UnsafeRawPointer?
        var runLength = 0
        defer {
            if let runStart { append(borrowedFrame: UnsafeRawBufferPointer(start: runStart, count: runLength), pool: pool) }
        }
        let prefixSize = Int(TOBY_PREFIX_SIZE)
        for index in 0..<messages.count {
            let message = messages.base[index]
            if message.count > limit { return index }
            if message.prefixed, message.order == order, let start = message.start {
                let frame = start - prefixSize
                if let run = runStart, run + runLength == frame {
                    runLength += message.count + prefixSize
                } else {
                    if let run = runStart {
                        append(borrowedFrame: UnsafeRawBufferPointer(start: run, count: runLength), pool: pool)
                    }
                    runStart = frame
                    runLength = message.count + prefixSize
                }
            } else {
                if let run = runStart { append(borrowedFrame: UnsafeRawBufferPointer(start: run, count: runLength), pool: pool) }
                runStart = nil
                append(payload: message.bytes, order: order, pool: pool)
            }
        }
        return nil
    }

    /// Appends already framed bytes held by an array (retained).
    mutating func append(framedArray array: [UInt8]) {
        guard !array.isEmpty else { return }
        append(chunk: .owned(array), bytes: array.count)
    }

    private mutating func appendPrefix(_ length: Int, order: toby_byte_order, pool: BufferPool) {
        let destination = reserveInline(Int(TOBY_PREFIX_SIZE), pool: pool)
        toby_prefix_encode(UInt64(length), order, destination.assumingMemoryBound(to: UInt8.self))
        commitInline(Int(TOBY_PREFIX_SIZE))
    }

    private mutating func append(chunk: Chunk, bytes: Int) {
        chunks.append(chunk)
        pendingBytes += bytes
    }

    /// Room for `count` more inline bytes; returns where they go.
    private mutating func reserveInline(_ count: Int, pool: BufferPool) -> UnsafeMutableRawPointer {
        if inlineBase == nil {
            inlineBase = pool.take()
            inlineCapacity = pool.size
            inlineFromPool = true
        }
        if inlineWrite + count > inlineCapacity {
            let live = inlineWrite - inlineRead
            if inlineRead > 0 && live + count <= inlineCapacity {
                // Slide the unsent bytes to the front. Inline chunks refer to
                // bytes by order, not address, so nothing else changes.
                inlineBase!.copyMemory(from: inlineBase! + inlineRead, byteCount: live)
            } else {
                var capacity = inlineCapacity * 2
                while live + count > capacity { capacity *= 2 }
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                grown.copyMemory(from: inlineBase! + inlineRead, byteCount: live)
                releaseInline(pool: pool)
                inlineBase = grown
                inlineCapacity = capacity
                inlineFromPool = false
            }
            inlineRead = 0
            inlineWrite = live
        }
        return inlineBase! + inlineWrite
    }

    private mutating func commitInline(_ count: Int) {
        inlineWrite += count
        pendingBytes += count
        if head < chunks.count, case .inline(let n) = chunks[chunks.count - 1] {
            chunks[chunks.count - 1] = .inline(n + count)
        } else {
            chunks.append(.inline(count))
        }
    }

    private mutating func releaseInline(pool: BufferPool) {
        guard let base = inlineBase else { return }
        if inlineFromPool { pool.give(base) } else { base.deallocate() }
        inlineBase = nil
        inlineCapacity = 0
        inlineRead = 0
        inlineWrite = 0
    }

    // MARK: Writing

    enum FlushResult: Equatable {
        /// Everything was written.
        case drained
        /// The socket buffer is full; wait for writability.
        case wouldBlock
        /// The write failed with this -errno.
        case failed(Int32)
    }

    /// Writes as much as the socket takes, many chunks per `sendmsg`,
    /// through the C writer (the one writer; `toby_writer_write_raw`, as
    /// the chunks hold frames that are framed already).
    mutating func flush(
        fd: Int32, scratch: WriterScratch, pool: BufferPool, io: UnsafePointer<toby_io> = toby_io_system()
    ) -> FlushResult {
        let writer = scratch.writer
        let outs = scratch.outs
        // Raw items only: the byte order is never used.
        _ = toby_writer_init(writer, TOBY_LITTLE_ENDIAN, fd, io)
        while pendingBytes > 0 {
            var count = 0
            var handed = 0  // bytes given to this write
            var inlineCursor = inlineRead
            var index = head
            // Keep the arrays alive while the kernel reads them: the chunks
            // array holds them and is not mutated until the write returns.
            while index < chunks.count && count < WriterScratch.capacity {
                let skip = index == head ? headOffset : 0
                switch chunks[index] {
                case .inline(let n):
                    // `inlineRead` is already past the head chunk's sent
                    // bytes (`consume` moves both it and `headOffset`), so
                    // the cursor starts at the first unsent byte.
                    outs[count] = toby_out(data: inlineBase! + inlineCursor, len: n - skip)
                    inlineCursor += n - skip
                case .owned(let array):
                    let base = array.withUnsafeBytes { $0.baseAddress! }
                    outs[count] = toby_out(data: base + skip, len: array.count - skip)
                case .borrowed(let bytes):
                    outs[count] = toby_out(data: bytes.baseAddress! + skip, len: bytes.count - skip)
                }
                handed += outs[count].len
                count += 1
                index += 1
            }
            var done = 0
            var offset: UInt64 = 0
            let rc = toby_writer_write_raw(writer, outs, count, &done, &offset, 0)
            if rc == 0 {
                consume(handed)  // all of it: no second pass over the items
                continue
            }
            var sent = Int(offset)
            for i in 0..<done { sent += outs[i].len }
            if sent > 0 { consume(sent) }
            if rc == -EAGAIN || rc == -EWOULDBLOCK { return .wouldBlock }
            return .failed(-rc)
        }
        finishDrain(pool: pool)
        return .drained
    }

    /// Drops `count` sent bytes from the front.
    private mutating func consume(_ count: Int) {
        var left = count
        pendingBytes -= count
        while left > 0 {
            let size: Int
            switch chunks[head] {
            case .inline(let n): size = n
            case .owned(let array): size = array.count
            case .borrowed(let bytes): size = bytes.count
            }
            let rest = size - headOffset
            if left < rest {
                headOffset += left
                if case .inline = chunks[head] { inlineRead += left }
                return
            }
            left -= rest
            if case .inline = chunks[head] { inlineRead += rest }
            chunks[head] = .inline(0)  // release an array now
            head += 1
            headOffset = 0
        }
        if head >= 64 && head * 2 >= chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
    }

    private mutating func finishDrain(pool: BufferPool) {
        chunks.removeAll(keepingCapacity: chunks.capacity <= 64)
        head = 0
        headOffset = 0
        hasBorrowed = false
        releaseInline(pool: pool)
    }

    /// Turns every lent range still queued into an owned copy: called when
    /// the batch that lent them ends.
    mutating func detachBorrowed() {
        guard hasBorrowed else { return }
        for index in head..<chunks.count {
            if case .borrowed(let bytes) = chunks[index] {
                chunks[index] = .owned([UInt8](bytes))
            }
        }
        hasBorrowed = false
    }

    /// Drops everything (an abortive close or a failed connection).
    mutating func discard(pool: BufferPool) {
        pendingBytes = 0
        finishDrain(pool: pool)
    }
}

/// The C writer and the items one flush hands it. A loop has one (it
/// flushes one connection at a time); the writer's pages are touched only
/// as far as they are used.
final class WriterScratch {
    /// Items per `toby_writer_write` call: one vector each.
    static let capacity = Int(TOBY_WRITER_IOV)
    let writer: UnsafeMutablePointer<toby_writer>
    let outs: UnsafeMutablePointer<toby_out>

    init() {
        writer = .allocate(capacity: 1)
        outs = .allocate(capacity: WriterScratch.capacity)
    }

    deinit {
        writer.deallocate()
        outs.deallocate()
    }
}
