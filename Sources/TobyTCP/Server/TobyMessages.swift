import CTobyFrame

/// One received message, lent by the event loop for the duration of a
/// ``TobyServerHandler/received(_:on:)`` call.
///
/// ``bytes`` points into the connection's receive ring (or, for a frame
/// larger than the ring, into its own buffer): no copy was made. Do not
/// keep the pointer past the call; copy with `Array(message.bytes)` to keep
/// the bytes.
public struct TobyMessage {
    let start: UnsafeRawPointer?

    /// Payload length in bytes.
    public let count: Int

    /// The message's 8 prefix bytes lie right before `start`, in `order`
    /// (a frame in the ring), so forwarding it sends them as they are.
    let prefixed: Bool

    /// Byte order of the prefix before `start`.
    let order: toby_byte_order

    /// The payload, valid only during the handler call that lent it.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: start, count: count) }

    /// Prefix and payload together, when they lie contiguous in the ring.
    var framed: UnsafeRawBufferPointer? {
        guard prefixed, let start else { return nil }
        return UnsafeRawBufferPointer(start: start - Int(TOBY_PREFIX_SIZE), count: count + Int(TOBY_PREFIX_SIZE))
    }

    init(start: UnsafeRawPointer?, count: Int, prefixed: Bool, order: toby_byte_order) {
        self.start = start
        self.count = count
        self.prefixed = prefixed
        self.order = order
    }

    init(bytes: UnsafeRawBufferPointer, framed: UnsafeRawBufferPointer?, order: toby_byte_order) {
        self.init(start: bytes.baseAddress, count: bytes.count, prefixed: framed != nil, order: order)
    }
}

/// The complete messages one read brought, in order, lent for the duration
/// of a ``TobyServerHandler/received(_:on:)`` call.
///
/// A random-access collection of ``TobyMessage``; iterating it allocates
/// nothing. ``TobyConnection/send(contentsOf:)-(TobyMessages)`` forwards them
/// all, straight from the ring.
public struct TobyMessages: RandomAccessCollection {
    let base: UnsafePointer<TobyMessage>
    /// The number of messages.
    public let count: Int

    /// The first index, 0.
    public var startIndex: Int { 0 }
    /// One past the last index.
    public var endIndex: Int { count }

    /// The message at `position`.
    public subscript(position: Int) -> TobyMessage {
        precondition(position >= 0 && position < count, "TobyMessages index out of range")
        return base[position]
    }

    /// Copies every payload out, for keeping past the handler call.
    public func copied() -> [[UInt8]] {
        map { Array($0.bytes) }
    }
}
