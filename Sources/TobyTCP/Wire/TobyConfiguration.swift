import CTobyFrame

/// The settings of a connection: byte order, limits and buffer sizes.
///
/// A configuration is a plain value: start from the defaults and change what
/// you need.
///
/// ```swift
/// var config = TobyConfiguration()
/// config.byteOrder = .bigEndian
/// config.readTimeout = .seconds(2)
/// let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: 15235, configuration: config)
/// ```
///
/// Settings are checked where a configuration is used: connecting, wrapping
/// a socket and ``TobyMessenger/start()`` throw
/// ``TobyError/invalidConfiguration(_:)`` naming the setting that is out of
/// range, before any byte moves. The throwing
/// ``init(byteOrder:maxFrameLength:ringCapacity:maxQueuedSendBytes:readTimeout:writeTimeout:)``
/// checks at once.
public struct TobyConfiguration: Sendable, Equatable, Hashable {
    /// Byte order of the 8-byte length prefix.
    public enum ByteOrder: Sendable, Equatable, Hashable {
        /// The TobyTcp protocol text's order, and the default.
        case littleEndian
        /// The order the original Rust `tobytcp` crate puts on the wire; use
        /// it to talk to services built on that crate.
        case bigEndian
    }

    /// Byte order of the length prefix, both ways. Default little-endian.
    public var byteOrder: ByteOrder = .littleEndian

    /// The largest payload, in bytes, accepted from the peer and allowed to
    /// be sent: at least 1. A received prefix over it ends the receiver with
    /// ``TobyError/frameTooLarge(length:limit:prefix:)`` before anything is
    /// allocated; a message over it is refused by `send` before a byte is
    /// written. Default 64 MiB.
    public var maxFrameLength: Int = 64 << 20

    /// Bytes of the receive ring buffer: a power of two from 16 bytes to
    /// 1 GiB. Frames up to `ringCapacity - 8` bytes are decoded in place;
    /// larger ones are read straight into the message's own storage.
    /// Default 64 KiB.
    public var ringCapacity: Int = 64 << 10

    /// Bytes that senders may queue behind a send in progress before they
    /// wait for it (backpressure for threads sharing one messenger): at
    /// least 1. Default 4 MiB.
    public var maxQueuedSendBytes: Int = 4 << 20

    /// If set, the longest the peer may take to complete a message while one
    /// is awaited, so an idle or slow-loris peer cannot hold a consumer
    /// forever. One meaning, two outcomes: a blocking receive (on
    /// ``TobyReceiver``) waits this long and throws ``TobyError/timedOut(_:)``
    /// for that receive only (what the peer sent so far stays buffered, and
    /// the receiver stays usable: retry or close); a connection served by an
    /// event loop (``TobyServer``, ``TobyAsyncConnection``) always awaits the
    /// next message, counted from the last one delivered, and is closed with
    /// ``TobyError/timedOut(_:)`` (reported to its handler or consumer) when
    /// none completes in time; it is not counted while reading is paused by
    /// back-pressure. Positive when set. Default nil.
    public var readTimeout: Duration? = nil

    /// If set, an async send that has waited this long for room in a
    /// connection's queue (a peer that does not read) fails with
    /// ``TobyError/writeTimedOut(_:)``; the message was not accepted. Positive
    /// when set. Default nil.
    public var writeTimeout: Duration? = nil

    /// The defaults: little-endian, 64 MiB frames, 64 KiB ring, 4 MiB of
    /// queued sends, no read or write timeout. The same as ``init()``.
    public static let `default` = TobyConfiguration()

    /// The defaults: little-endian, 64 MiB frames, 64 KiB ring, 4 MiB of
    /// queued sends, no read or write timeout.
    public init() {}

    /// Makes a configuration and checks at once that the settings are in
    /// range.
    ///
    /// - Parameters:
    ///   - byteOrder: Byte order of the length prefix.
    ///   - maxFrameLength: Largest payload in bytes, at least 1.
    ///   - ringCapacity: Receive ring size, a power of two in `16...1 GiB`.
    ///   - maxQueuedSendBytes: Send queue bound in bytes, at least 1.
    ///   - readTimeout: Optional limit on waiting for the peer's bytes; positive.
    ///   - writeTimeout: Optional limit on an async send's wait for room in
    ///     the connection's queue; positive.
    /// - Throws: ``TobyError/invalidConfiguration(_:)`` naming the setting.
    public init(
        byteOrder: ByteOrder = .littleEndian,
        maxFrameLength: Int = 64 << 20,
        ringCapacity: Int = 64 << 10,
        maxQueuedSendBytes: Int = 4 << 20,
        readTimeout: Duration? = nil,
        writeTimeout: Duration? = nil
    ) throws(TobyError) {
        self.byteOrder = byteOrder
        self.maxFrameLength = maxFrameLength
        self.ringCapacity = ringCapacity
        self.maxQueuedSendBytes = maxQueuedSendBytes
        self.readTimeout = readTimeout
        self.writeTimeout = writeTimeout
        try validate()
    }

    /// Checks that every setting is in range. Every API that takes a
    /// configuration calls it before it uses one.
    ///
    /// - Throws: ``TobyError/invalidConfiguration(_:)`` naming the first
    ///   setting out of range, and the value it had.
    func validate() throws(TobyError) {
        guard maxFrameLength >= 1 else {
            throw .invalidConfiguration("maxFrameLength must be at least 1 (got \(maxFrameLength))")
        }
        guard ringCapacity >= 16, ringCapacity <= 1 << 30, ringCapacity & (ringCapacity - 1) == 0 else {
            throw .invalidConfiguration("ringCapacity must be a power of two from 16 bytes to 1 GiB (got \(ringCapacity))")
        }
        guard maxQueuedSendBytes >= 1 else {
            throw .invalidConfiguration("maxQueuedSendBytes must be at least 1 (got \(maxQueuedSendBytes))")
        }
        if let timeout = readTimeout, timeout <= .zero {
            throw .invalidConfiguration("readTimeout must be positive (got \(timeout))")
        }
        if let timeout = writeTimeout, timeout <= .zero {
            throw .invalidConfiguration("writeTimeout must be positive (got \(timeout))")
        }
    }

    var cByteOrder: toby_byte_order {
        byteOrder.cValue
    }
}
