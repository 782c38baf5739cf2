import NIOCore

/// Something that checks received messages (see Payloads.swift).
protocol MessageCheck {
    mutating func check(_ message: UnsafeRawBufferPointer)
    var received: Int { get }
}

extension Checker: MessageCheck {
    var received: Int { count }
}

extension TaggedChecker: MessageCheck {
    var received: Int { total }
}

/// Counts and checks decoded frames; opens `done` after `expected` frames.
/// Touched only on its event loop until `done` opens.
final class FrameCounter<Check: MessageCheck>: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private(set) var check: Check
    private let expected: Int
    private let done: Latch
    private let end: EndClock

    init(_ check: Check, expected: Int, done: Latch, end: EndClock) {
        self.check = check
        self.expected = expected
        self.done = done
        self.end = end
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { check.check($0) }
        if check.received == expected {
            end.mark()
            done.countDown()
        }
    }
}

/// The echo handler of NIO's examples: write on read, flush on read complete.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// A handler started from outside its event loop with `start(on:)`.
class StartableHandler: @unchecked Sendable {
    var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Runs `begin` on the channel's event loop.
    func start(on channel: Channel) {
        channel.eventLoop.execute { [self] in
            if let context { begin(context: context) }
        }
    }

    func begin(context: ChannelHandlerContext) {}
}

/// Writes `count` messages, a batch of up to 256 then a flush, while the
/// channel is writable; resumes when it becomes writable again.
final class BatchSender: StartableHandler, ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let buffers: [ByteBuffer]
    private let count: Int
    private var sent = 0
    private var started = false

    init(_ payloads: Payloads, count: Int) {
        buffers = payloads.messages.map { ByteBuffer(bytes: $0) }
        self.count = count
    }

    override func begin(context: ChannelHandlerContext) {
        started = true
        send(context: context)
    }

    private func send(context: ChannelHandlerContext) {
        while sent < count && context.channel.isWritable {
            let n = min(256, count - sent)
            for seq in sent..<(sent + n) {
                context.write(wrapOutboundOut(buffers[seq % buffers.count]), promise: nil)
            }
            sent += n
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if started && context.channel.isWritable { send(context: context) }
        context.fireChannelWritabilityChanged()
    }
}

/// Ping-pong client: one message out, wait for its echo, record the time.
final class PingClient: StartableHandler, ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let buffers: [ByteBuffer]
    private let total: Int
    private let done: Latch
    private var sent = 0
    private var sentAt: UInt64 = 0
    private(set) var latencies: LatencyRecorder
    private(set) var check: Checker

    init(_ payloads: Payloads, count: Int, warmup: Int, done: Latch) {
        buffers = payloads.messages.map { ByteBuffer(bytes: $0) }
        total = warmup + count
        self.done = done
        latencies = LatencyRecorder(warmup: warmup)
        check = Checker(payloads)
    }

    override func begin(context: ChannelHandlerContext) {
        sendNext(context: context)
        context.flush()
    }

    private func sendNext(context: ChannelHandlerContext) {
        sentAt = nowNanoseconds()
        context.write(wrapOutboundOut(buffers[sent % buffers.count]), promise: nil)
        sent += 1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        latencies.record(nowNanoseconds() - sentAt)
        unwrapInboundIn(data).withUnsafeReadableBytes { check.check($0) }
        if sent < total {
            sendNext(context: context)
        } else if check.count == total {
            done.countDown()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Pipelined client: keeps `window` messages outstanding, one new message
/// per echo, flushed on read complete.
final class PipelineClient: StartableHandler, ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let buffers: [ByteBuffer]
    private let total: Int
    private let window: Int
    private let done: Latch
    private let end: EndClock
    private var sent = 0
    private(set) var check: Checker

    init(_ payloads: Payloads, count: Int, window: Int, done: Latch, end: EndClock) {
        buffers = payloads.messages.map { ByteBuffer(bytes: $0) }
        total = count
        self.window = window
        self.done = done
        self.end = end
        check = Checker(payloads)
    }

    override func begin(context: ChannelHandlerContext) {
        while sent < min(window, total) {
            context.write(wrapOutboundOut(buffers[sent % buffers.count]), promise: nil)
            sent += 1
        }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unwrapInboundIn(data).withUnsafeReadableBytes { check.check($0) }
        if sent < total {
            context.write(wrapOutboundOut(buffers[sent % buffers.count]), promise: nil)
            sent += 1
        }
        if check.count == total {
            end.mark()
            done.countDown()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
