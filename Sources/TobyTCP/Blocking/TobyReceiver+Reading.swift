import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

// Reading: frames that fit the ring are lent or copied out of it; a larger
// one is read into storage of its own (``LargeFrame``).
extension TobyReceiver {
    /// `first` followed by the complete frames already in the ring, up to
    /// `maxCount` messages, taken under one lock.
    func collectBuffered(after first: [UInt8], maxCount: Int) -> [[UInt8]] {
        var batch = [first]
        lock.lock()
        defer { lock.unlock() }
        while batch.count < maxCount, let message = nextBuffered() {
            batch.append(message)
        }
        return batch
    }

    /// The hot path, with the lock held: a whole frame already in the ring,
    /// copied out, without the general state machine.
    @inline(__always)
    func nextBuffered() -> [UInt8]? {
        bufferedFrame().map(copyOut)
    }

    /// With the lock held: the next frame if it is already whole in the ring
    /// (not yet consumed), without the general state machine.
    @inline(__always)
    func bufferedFrame() -> toby_frame? {
        guard failure == nil, ring != nil, !isClosed else { return nil }
        var frame = toby_frame()
        guard toby_reader_next(reader, &frame) == TOBY_FRAME else { return nil }
        return frame
    }

    /// With the lock held, after a fill: what the socket gave so far.
    @inline(__always)
    func noteBytesRead() {
        #if !TOBY_NO_STATISTICS  // Scripts/statistics-overhead.sh
        socket.bytesReceived.store(Int(truncatingIfNeeded: reader.pointee.bytes_read), ordering: .relaxed)
        #endif
    }

    /// With the lock held: releases the delivered ring frame, and counts it.
    @inline(__always)
    func consumeFrame() {
        toby_reader_consume(reader)
        socket.messagesReceived.bump(1)
    }

    /// Copies a ring frame into a new array and releases it from the ring.
    @inline(__always)
    func copyOut(_ frame: toby_frame) -> [UInt8] {
        let count = frame.len.0 + frame.len.1
        if frame.len.1 == 0 {
            // Measured: Array(UnsafeRawBufferPointer) allocates in about half
            // the time of Array(unsafeUninitializedCapacity:), whose
            // unspecialised buffer initialiser looks up generic metadata on
            // every call (Swift 6.3).
            let message = Array(UnsafeRawBufferPointer(start: frame.data.0, count: count))
            consumeFrame()
            return message
        }
        let message = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if frame.len.0 > 0 {
                UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: frame.data.0!, byteCount: frame.len.0)
            }
            if frame.len.1 > 0 {
                UnsafeMutableRawPointer(buffer.baseAddress! + frame.len.0)
                    .copyMemory(from: frame.data.1!, byteCount: frame.len.1)
            }
            initialized = count
        }
        consumeFrame()
        return message
    }

    enum Outcome {
        case ring(toby_frame)  // complete frame in the ring; consume after use
        case owned([UInt8])  // a large frame, read into its own storage
        case end
        case wouldBlock
    }

    /// One attempt at the next message; the lock must be held.
    ///
    /// `flags` is 0 to block in `recvmsg`, or `MSG_DONTWAIT`. With
    /// MSG_DONTWAIT and a `deadline`, waits for readability until then
    /// (0: don't wait). Returns `.wouldBlock` when nothing complete arrived.
    /// Without a deadline, `EAGAIN` (possible only on an adopted socket with
    /// `O_NONBLOCK` or `SO_RCVTIMEO`) is waited out with `poll`, so the
    /// result is never `.wouldBlock`.
    ///
    /// Once ``close()`` was called, returns `.end` at once, before looking
    /// at anything buffered.
    func step(flags: Int32, deadline: UInt64?) throws(TobyError) -> Outcome {
        if !isClosed { prepareReader() }
        while true {
            if isClosed {
                discardAfterClose()
                if socket.quiescing.load(ordering: .relaxed) {
                    socket.receiverStopped.store(true, ordering: .sequentiallyConsistent)
                }
                return .end
            }
            if let failure { throw failure }
            if ended { return .end }
            var frame = toby_frame()
            let status = toby_reader_next(reader, &frame)
            switch status {
            case Int32(TOBY_FRAME):
                return .ring(frame)
            case Int32(TOBY_FRAME_DIRECT):
                let complete = try readLarge(length: frame.length, flags: flags, deadline: deadline)
                if isClosed { continue }  // ends the stream above
                if complete {
                    let message = large.take()
                    socket.messagesReceived.bump(1)
                    return .owned(message)
                }
                return .wouldBlock
            case Int32(TOBY_NEED_MORE):
                guard let n = try parked(flags == 0, { toby_reader_fill(reader, flags) }) else { continue }
                if n >= 0 {
                    noteBytesRead()
                    continue
                }
                if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) {
                    if try waitForData(flags: flags, deadline: deadline) { continue }
                    return .wouldBlock
                }
                continue  // sticky error: the next toby_reader_next reports it in order
            case Int32(TOBY_END):
                ended = true
                return .end
            default:
                throw fail(status, frame)
            }
        }
    }

    /// After EAGAIN: true if it is worth reading again. With no deadline,
    /// waits for as long as it takes (the socket was made non-blocking, or
    /// given SO_RCVTIMEO, by its owner); a deadline of 0 means don't wait.
    func waitForData(flags: Int32, deadline: UInt64?) throws(TobyError) -> Bool {
        if deadline == 0 { return false }
        // A shutdown that began: read again, which then ends the stream.
        return try parked(true) { () throws(TobyError) in try socket.waitReadable(deadline: deadline) } ?? true
    }

    /// Reads a frame too large for the ring into `large`, which grows with
    /// the bytes received (``LargeFrame``) so a peer cannot make us allocate
    /// what it only claims. Returns true when the frame is complete.
    func readLarge(length: UInt64, flags: Int32, deadline: UInt64?) throws(TobyError) -> Bool {
        let total = Int(length)  // <= maxFrameLength <= Int.max, checked by the C reader
        if !large.isActive || large.length != total {
            large.start(length: total, arrived: Int(toby_reader_buffered(reader)) + receivedUnread(socket.fd))
        }
        let fd = socket.fd
        while !large.isComplete {
            if isClosed { return false }  // `step` ends the stream
            let n = try large.read(queued: { receivedUnread(fd) }) { (room, count) throws(TobyError) -> Int in
                // 0 (never a fill's result): a shutdown began, read nothing.
                try parked(flags == 0) { toby_reader_direct_fill(reader, room, count, flags) } ?? 0
            }
            if n > 0 {
                noteBytesRead()
                continue
            }
            if n == 0 { return false }
            if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) {
                if try waitForData(flags: flags, deadline: deadline) { continue }
                return false
            }
            if isClosed { return false }
            var frame = toby_frame()
            let status = toby_reader_next(reader, &frame)
            throw fail(status < 0 ? status : Int32(n), frame)
        }
        return true
    }

    /// Records and returns the sticky error for a negative status.
    func fail(_ status: Int32, _ frame: toby_frame) -> TobyError {
        let ownerClosed = isClosed
        let error: TobyError
        switch status {
        case TOBY_EFRAMETOOLARGE:
            let prefix = withUnsafeBytes(of: frame.prefix) { Array($0) }
            error = .frameTooLarge(length: frame.length, limit: limit, prefix: prefix)
            // The stream cannot be resynchronised: stop the peer too.
            socket.shutdown(Int32(SHUT_RDWR))
        case TOBY_ETRUNCATED:
            error = ownerClosed ? .closed : .truncatedFrame(expected: frame.expected, received: frame.received)
        default:
            error = TobyError.fromCode(Int(status), operation: "recvmsg")
        }
        large.reset()
        failure = error
        return error
    }

    func takeOwned(_ outcome: Outcome) throws(TobyError) -> [UInt8]? {
        switch outcome {
        case .end:
            return nil
        case .wouldBlock:
            return nil
        case .owned(let message):
            return message
        case .ring(let frame):
            return copyOut(frame)
        }
    }

    func scratchBuffer() -> UnsafeMutableRawBufferPointer {
        if let scratch { return scratch }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: configuration.ringCapacity, alignment: 16)
        scratch = buffer
        return buffer
    }
}
