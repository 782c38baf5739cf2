import CTobyFrame

/// The settings of a connection: byte order, limits and buffer sizes.
///
/// Contradictory or out-of-range settings are rejected when the configuration
/// is made, not when the first byte moves:
///
/// ```swift
/// let config = try TobyConfiguration(byteOrder: .bigEndian, maxFrameLength: 1 << 20)
/// ```
public struct TobyConfiguration: Sendable, Equatable, Hashable {
    /// Byte order of the 8-byte length prefix.
    public enum ByteOrder: Sendable, Equatable, Hashable {
        /// The TobyTcp protocol text's order, and the default.
        case littleEndian
        /// The order the original Rust `tobytcp` crate puts on the wire; use
        /// it to talk to services built on that crate.
        case bigEndian
    }

    /// Byte order of the length prefix, both ways.
    public let byteOrder: ByteOrder

    /// The largest payload, in bytes, accepted from the peer and allowed to
    /// be sent. A received prefix over it ends the receiver with
    /// ``TobyError/frameTooLarge(length:limit:prefix:)`` before anything is
    /// allocated; a message over it is refused by `send` before a byte is
    /// written. Default 64 MiB.
    public let maxFrameLength: Int

    /// Bytes of the receive ring buffer: a power of two, at least 16.
    /// Frames up to `ringCapacity - 8` bytes are decoded in place; larger
    /// ones are read straight into the message's own storage. Default 64 KiB.
    public let ringCapacity: Int

    /// Bytes that senders may queue behind a send in progress before they
    /// wait for it (backpressure for threads sharing one messenger).
    /// Default 4 MiB.
    public let maxQueuedSendBytes: Int

    /// If set, a receive that has been waiting for a peer's bytes this long
    /// fails with ``TobyError/timedOut(_:)`` (the connection stays usable), so
    /// an idle or slow-loris peer cannot hold a consumer forever. Default nil.
    public let readTimeout: Duration?

    /// The defaults: little-endian, 64 MiB frames, 64 KiB ring, 4 MiB of
    /// queued sends, no read timeout.
    public static let `default` = TobyConfiguration(
        unchecked: .littleEndian, maxFrameLength: 64 << 20, ringCapacity: 64 << 10,
        maxQueuedSendBytes: 4 << 20, readTimeout: nil)

    /// Makes a configuration, checking that the settings fit together.
    ///
    /// - Parameters:
    ///   - byteOrder: Byte order of the length prefix.
    ///   - maxFrameLength: Largest payload in bytes, `0...Int.max`.
    ///   - ringCapacity: Receive ring size, a power of two in `16...1 GiB`.
    ///   - maxQueuedSendBytes: Send queue bound in bytes, at least 1.
    ///   - readTimeout: Optional limit on waiting for the peer's bytes; positive.
    /// - Throws: ``TobyError/invalidConfiguration(_:)`` naming the setting.
    public init(
        byteOrder: ByteOrder = .littleEndian,
        maxFrameLength: Int = 64 << 20,
        ringCapacity: Int = 64 << 10,
        maxQueuedSendBytes: Int = 4 << 20,
        readTimeout: Duration? = nil
    ) throws(TobyError) {
        guard maxFrameLength >= 0 else {
            throw .invalidConfiguration("maxFrameLength must not be negative (got \(maxFrameLength))")
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
        self.init(
            unchecked: byteOrder, maxFrameLength: maxFrameLength, ringCapacity: ringCapacity,
            maxQueuedSendBytes: maxQueuedSendBytes, readTimeout: readTimeout)
    }

    private init(
        unchecked byteOrder: ByteOrder, maxFrameLength: Int, ringCapacity: Int,
        maxQueuedSendBytes: Int, readTimeout: Duration?
    ) {
        self.byteOrder = byteOrder
        self.maxFrameLength = maxFrameLength
        self.ringCapacity = ringCapacity
        self.maxQueuedSendBytes = maxQueuedSendBytes
        self.readTimeout = readTimeout
    }

    var cByteOrder: toby_byte_order {
        byteOrder == .littleEndian ? TOBY_LITTLE_ENDIAN : TOBY_BIG_ENDIAN
    }
}
