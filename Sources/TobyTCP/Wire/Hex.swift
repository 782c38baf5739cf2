/// Lower-case hex, two digits a byte: `00ff10`, or with `separator` between
/// bytes: `00 ff 10`. The package's one hex encoder (error messages, the
/// tool's `--hex` output).
package func hexEncoded(_ bytes: UnsafeRawBufferPointer, separator: UInt8? = nil) -> String {
    let digits: StaticString = "0123456789abcdef"
    let width = separator == nil ? 2 : 3
    let capacity = max(0, bytes.count * width - (width - 2))
    return String(unsafeUninitializedCapacity: capacity) { out in
        var index = 0
        for (offset, byte) in bytes.enumerated() {
            if let separator, offset > 0 {
                out[index] = separator
                index += 1
            }
            out[index] = digits.utf8Start[Int(byte >> 4)]
            out[index + 1] = digits.utf8Start[Int(byte & 0x0f)]
            index += 2
        }
        return index
    }
}
