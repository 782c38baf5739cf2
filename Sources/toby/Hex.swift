import TobyTCP

/// Hex decoding and the text-or-hex rendering of messages (encoding is the
/// library's).
enum Hex {
    /// Lower-case hex, two digits a byte, no separators: `00ff10`.
    static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        hexEncoded(bytes)
    }

    static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { encode($0) }
    }

    /// Decodes hex digits; an optional `0x` prefix and spaces, `:` or `-`
    /// between bytes are ignored. Returns nil for anything else or an odd
    /// number of digits.
    static func decode(_ text: String) -> [UInt8]? {
        var utf8 = Substring(text).utf8[...]
        if utf8.starts(with: "0x".utf8) || utf8.starts(with: "0X".utf8) { utf8 = utf8.dropFirst(2) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var high: UInt8?
        for char in utf8 {
            let value: UInt8
            switch char {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = char - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = char - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = char - UInt8(ascii: "A") + 10
            case UInt8(ascii: " "), UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "\t"):
                if high != nil { return nil }  // a separator inside a byte
                continue
            default:
                return nil
            }
            if let h = high {
                bytes.append(h << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return high == nil ? bytes : nil
    }

    /// How a message is shown on one line: hex when `hex` is set; otherwise
    /// the text if it is valid UTF-8 without control characters (tab
    /// allowed), else `0x` followed by hex.
    static func display(_ bytes: UnsafeRawBufferPointer, hex: Bool) -> String {
        if hex { return encode(bytes) }
        if let text = printableText(bytes) { return text }
        return "0x" + encode(bytes)
    }

    static func printableText(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if value == 0x09 { continue }
            if value < 0x20 || (0x7f...0x9f).contains(value) || value == 0x2028 || value == 0x2029 { return nil }
        }
        return text
    }
}
