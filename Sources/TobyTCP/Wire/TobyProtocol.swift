import CTobyFrame

/// The TobyTcp wire format, as pure functions (the Rust crate's `protocol`
/// module).
///
/// ```
/// +----------------------------+---------------------------+
/// | length: 8 bytes, unsigned  | payload: `length` bytes   |
/// +----------------------------+---------------------------+
///
/// "toby is a good dog" (18 bytes) -> 26 bytes, little-endian:
/// 12 00 00 00 00 00 00 00 74 6f 62 79 20 69 73 20 61 20 67 6f 6f 64 20 64 6f 67
/// ```
public enum TobyProtocol {
    /// Size of the length prefix in bytes.
    public static let prefixSize = 8

    /// Frames `payload`: its 8-byte length prefix followed by the payload
    /// (the crate's `encode_tobytcp`).
    ///
    /// - Parameters:
    ///   - payload: The message bytes.
    ///   - byteOrder: Byte order of the prefix; little-endian by default.
    /// - Returns: `8 + payload.count` bytes.
    public static func encode(
        _ payload: some Collection<UInt8>, byteOrder: TobyConfiguration.ByteOrder = .littleEndian
    ) -> [UInt8] {
        var frame = prefix(length: UInt64(payload.count), byteOrder: byteOrder)
        frame.reserveCapacity(prefixSize + payload.count)
        frame.append(contentsOf: payload)
        return frame
    }

    /// The 8-byte prefix announcing a payload of `length` bytes.
    ///
    /// The corresponding C function is `toby_prefix_encode`.
    public static func prefix(
        length: UInt64, byteOrder: TobyConfiguration.ByteOrder = .littleEndian
    ) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: prefixSize) { buffer, count in
            toby_prefix_encode(length, byteOrder.cValue, buffer.baseAddress!)
            count = prefixSize
        }
    }

    /// The payload length announced by an 8-byte prefix, or `nil` if
    /// `prefix` does not hold exactly 8 bytes.
    ///
    /// The corresponding C function is `toby_prefix_decode`.
    public static func length(
        fromPrefix prefix: some Collection<UInt8>, byteOrder: TobyConfiguration.ByteOrder = .littleEndian
    ) -> UInt64? {
        guard prefix.count == prefixSize else { return nil }
        let bytes = Array(prefix)
        return bytes.withUnsafeBufferPointer { toby_prefix_decode($0.baseAddress!, byteOrder.cValue) }
    }
}

extension TobyConfiguration.ByteOrder {
    /// The C core's name for this byte order.
    var cValue: toby_byte_order {
        self == .littleEndian ? TOBY_LITTLE_ENDIAN : TOBY_BIG_ENDIAN
    }
}
