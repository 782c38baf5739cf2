#if canImport(Glibc)
import Glibc
#endif

/// The messages `toby bench` sends, and the check of every echoed byte.
///
/// Message `k` of a connection is `variants[k % variants.count]`. Byte `j`
/// of variant `v` is `v * 131 + j * 7 + j / 256` (mod 256): two variants
/// differ in every byte (131 is odd and there are fewer than 256 of them),
/// so a reply that was lost, duplicated, reordered or belongs to another
/// message fails the check at its first byte, and a corrupted byte fails it
/// where it is. The variants are built once and sent by reference, so the
/// generator copies nothing per message; at most 251 of them, and no more
/// than fit in about 16 MiB (two for the largest messages).
struct BenchPayloads: Sendable {
    let size: Int
    let variants: [[UInt8]]

    init(size: Int) {
        self.size = size
        let count = max(2, min(251, (16 << 20) / max(size, 1)))
        variants = (0..<count).map { v in
            [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                for j in 0..<size {
                    buffer[j] = UInt8(truncatingIfNeeded: v &* 131 &+ j &* 7 &+ (j >> 8))
                }
                initialized = size
            }
        }
    }

    /// Message `k`.
    @inline(__always)
    func message(_ k: Int) -> [UInt8] { variants[k % variants.count] }

    /// Nil if `reply` is message `k`; otherwise what differs, for a person.
    func mismatch(_ reply: UnsafeRawBufferPointer, message k: Int) -> String? {
        let expected = message(k)
        if reply.count != size {
            return "the reply is \(reply.count) bytes long, the message sent was \(size)"
        }
        let same = expected.withUnsafeBytes { sent in
            size == 0 || memcmp(reply.baseAddress!, sent.baseAddress!, size) == 0
        }
        if same { return nil }
        let index = (0..<size).first { reply[$0] != expected[$0] } ?? 0
        return "byte \(index) of the reply is \(hex(reply[index])), the message sent had \(hex(expected[index]))"
    }

    private func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return "0x" + (digits.count == 1 ? "0" + digits : digits)
    }
}
