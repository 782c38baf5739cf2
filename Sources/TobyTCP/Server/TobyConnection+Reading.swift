import CTobyFrame
import Glibc

// Reading: frames that fit the ring are lent to the handler in place, a
// batch per read; larger ones are read into storage of their own.
extension TobyConnection {

    private func attachRing() -> Bool {
        if ring != nil { return true }
        let capacity = configuration.ringCapacity
        let buffer = loop.ringPool(capacity: capacity).take()
        let bytes = buffer.assumingMemoryBound(to: UInt8.self)
        if reader.pointee.io == nil {
            let rc = toby_reader_init(reader, bytes, capacity, UInt64(configuration.maxFrameLength), order, fd, toby_io_system())
            if rc != 0 {
                loop.ringPool(capacity: capacity).give(buffer)
                return false
            }
        } else if toby_reader_set_ring(reader, bytes, capacity) != 0 {
            loop.ringPool(capacity: capacity).give(buffer)
            return false
        }
        ring = buffer
        return true
    }

    /// Gives the ring back to the loop's pool once nothing is buffered.
    private func detachRingIfIdle() {
        guard let ring, toby_reader_buffered(reader) == 0 else { return }
        if toby_reader_set_ring(reader, nil, 0) == 0 {
            loop.ringPool(capacity: configuration.ringCapacity).give(ring)
            self.ring = nil
        }
    }

    /// One read of the socket, then every complete frame it finished goes to
    /// the handler as one batch; then the end of stream or the error, if
    /// that is what the read found.
    func readAndDeliver() {
        guard attachRing() else {
            perform(machine.inputFailed(.system(operation: "toby_reader_init", errno: EINVAL)))
            return
        }
        var didRead = false
        var count = 0
        decoding: while machine.delivers {
            var frame = toby_frame()
            let status = collectFrames(&count, &frame)
            switch status {
            case Int32(TOBY_FRAME):
                // A frame wrapped: the scratch copy is single, deliver first.
                deliver(count)
                count = 0
            case Int32(TOBY_NEED_MORE):
                // Deliver before the ring is written again: the batch points into it.
                deliver(count)
                count = 0
                if didRead { break decoding }
                didRead = true
                let n = toby_reader_fill(reader, 0)
                if n > 0 { countReaderBytes() }
                if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) { break decoding }
            // Data, end of stream or an error: next() tells which, in order.
            case Int32(TOBY_FRAME_DIRECT):
                deliver(count)
                count = 0
                if !readDirect(frame, didRead: &didRead) { break decoding }
            case Int32(TOBY_END):
                deliver(count)
                count = 0
                perform(machine.inputEnded())
                break decoding
            default:
                deliver(count)
                count = 0
                perform(machine.inputFailed(readError(status, frame)))
                break decoding
            }
        }
        deliver(count)
        if !machine.isClosed { detachRingIfIdle() }
    }

    /// Decodes complete ring frames into the loop's batch array, from
    /// `count` on, until the next status that is not a plain frame (which it
    /// returns, with `frame` describing it), or until a frame that wrapped
    /// around the ring's end was made contiguous (returns TOBY_FRAME: the
    /// batch must be delivered before another wrap reuses the scratch).
    /// The hot loop of the server: locals only, one C call per frame.
    @inline(__always)
    private func collectFrames(_ count: inout Int, _ frame: inout toby_frame) -> Int32 {
        let loop = self.loop
        let reader = self.reader
        let order = self.order
        let ringStart = UnsafeRawPointer(ring!)
        let prefixSize = Int(TOBY_PREFIX_SIZE)
        var batch = loop.batch
        var capacity = loop.batchCapacity
        let spans = loop.spans
        var n = count
        defer { count = n }
        while true {
            // The common case in C, many frames per call.
            if n == capacity {
                loop.reserveBatch(n + 1)
                batch = loop.batch
                capacity = loop.batchCapacity
            }
            let room = min(capacity - n, EventLoop.spanCapacity)
            let taken = toby_reader_take(reader, spans, room)
            for i in 0..<taken {
                batch[n + i] = TobyMessage(
                    start: UnsafeRawPointer(spans[i].data), count: spans[i].len, prefixed: true, order: order)
            }
            n += taken
            if taken == room { continue }
            // Anything else (a frame that wraps, a direct frame, the end, an
            // error, or simply no complete frame) through the general path.
            let status = toby_reader_next(reader, &frame)
            guard status == Int32(TOBY_FRAME) else { return status }
            if n == capacity {
                loop.reserveBatch(n + 1)
                batch = loop.batch
                capacity = loop.batchCapacity
            }
            let length = Int(frame.length)
            let start = UnsafeRawPointer(frame.data.0)
            if frame.len.1 == 0 {
                var framed: UnsafeRawBufferPointer?
                if let start, start - prefixSize >= ringStart {
                    framed = UnsafeRawBufferPointer(start: start - prefixSize, count: length + prefixSize)
                }
                batch[n] = TobyMessage(bytes: UnsafeRawBufferPointer(start: start, count: length), framed: framed, order: order)
                n += 1
                toby_reader_consume(reader)
                continue
            }
            // The payload wraps around the ring's end: make it contiguous once.
            let scratch = loop.scratchBuffer(length)
            scratch.copyMemory(from: start!, byteCount: frame.len.0)
            (scratch + frame.len.0).copyMemory(from: frame.data.1!, byteCount: frame.len.1)
            batch[n] = TobyMessage(bytes: UnsafeRawBufferPointer(start: scratch, count: length), framed: nil, order: order)
            n += 1
            toby_reader_consume(reader)
            return Int32(TOBY_FRAME)
        }
    }

    /// A frame too large for the ring: its payload is read straight into
    /// storage of its own that follows the bytes received (``LargeFrame``,
    /// the rule the blocking receiver has too), so a peer that announces
    /// much and sends little costs little. Complete, it is lent to the
    /// handler with its prefix in front, so forwarding it (or an async
    /// consumer) retains the array instead of copying it. Returns true once
    /// the frame was delivered and decoding may go on.
    private func readDirect(_ frame: toby_frame, didRead: inout Bool) -> Bool {
        let total = Int(frame.length)
        if !large.isActive || large.length != total {
            large.start(length: total, arrived: Int(toby_reader_buffered(reader)) + receivedUnread(fd))
        }
        let fd = self.fd
        let reader = self.reader
        while !large.isComplete {
            // Buffered bytes are taken without a read; a read only once per event.
            if toby_reader_buffered(reader) == 0 {
                if didRead { return false }
                didRead = true
            }
            let n = large.read(queued: { receivedUnread(fd) }) { room, count in
                toby_reader_direct_fill(reader, room, count, 0)
            }
            if n > 0 { countReaderBytes() }
            if n == -Int(EAGAIN) || n == -Int(EWOULDBLOCK) { return false }
            if n < 0 {
                var failed = toby_frame()
                let status = toby_reader_next(reader, &failed)
                perform(machine.inputFailed(readError(status < 0 ? status : Int32(n), failed)))
                return false
            }
        }
        var framed = large.take()
        framed.withUnsafeMutableBytes {
            toby_prefix_encode(UInt64(total), order, $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        loop.currentDirect = framed
        framed.withUnsafeBytes { bytes in
            let payload = UnsafeRawBufferPointer(rebasing: bytes[Int(TOBY_PREFIX_SIZE)...])
            loop.batch[0] = TobyMessage(bytes: payload, framed: nil, order: order)
            deliver(1)
        }
        loop.currentDirect = nil
        return machine.state.reads
    }

    private func deliver(_ count: Int) {
        guard count > 0, !machine.isClosed else { return }
        armReadDeadline()
        countDelivered(count)
        let messages = TobyMessages(base: loop.batch, count: count)
        withHandler { $0.received(messages, on: self) }
        // Replies of this batch (to this or other connections) go out now,
        // before the ring that lent the messages is read into again.
        loop.flushDirty()
    }

    private func readError(_ status: Int32, _ frame: toby_frame) -> TobyError {
        switch status {
        case TOBY_EFRAMETOOLARGE:
            let prefix = withUnsafeBytes(of: frame.prefix) { Array($0) }
            return .frameTooLarge(length: frame.length, limit: UInt64(configuration.maxFrameLength), prefix: prefix)
        case TOBY_ETRUNCATED:
            return .truncatedFrame(expected: frame.expected, received: frame.received)
        default:
            return TobyError.fromCode(Int(status), operation: "recvmsg")
        }
    }

    /// Reads and drops what the peer sends (nothing is delivered in this
    /// state); its end of stream or error moves the state on.
    func discardInput() {
        let size = 64 << 10
        let buffer = loop.scratchBuffer(size)
        for _ in 0..<16 {
            let n = recv(fd, buffer, size, Int32(MSG_DONTWAIT))
            if n > 0 {
                machine.discarded()
                countReceived(bytes: n)
                continue
            }
            if n == 0 {
                perform(machine.discardedInputEnded())
                return
            }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return }
            perform(machine.finish(.system(operation: "recv", errno: code)))
            return
        }
    }
}
