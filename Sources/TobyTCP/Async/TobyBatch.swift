/// Messages that one read brought, owned: the async API's unit of delivery.
///
/// The messages' frames (prefix and payload) sit back to back in one array,
/// copied out of the receive ring in one pass, so a batch costs two
/// allocations however many messages it holds, and forwarding it with
/// ``TobyAsyncConnection/send(contentsOf:)-(TobyBatch)`` sends that array as
/// it is, without re-encoding.
public struct TobyBatch: RandomAccessCollection, Sendable {
    /// Frames back to back, prefixes in `byteOrder`.
    let frames: [UInt8]
    /// Where each payload starts in `frames`.
    let starts: [Int]
    let byteOrder: TobyConfiguration.ByteOrder

    /// The first index, 0.
    public var startIndex: Int { 0 }
    /// The number of messages.
    public var endIndex: Int { starts.count }

    /// The payload of message `position`, a view of the batch's storage.
    public subscript(position: Int) -> ArraySlice<UInt8> {
        let start = starts[position]
        let end = position + 1 < starts.count ? starts[position + 1] - 8 : frames.count
        return frames[start..<end]
    }

    /// Copies the batch's messages out as arrays.
    public var messages: [[UInt8]] { map { Array($0) } }

    /// Copies a lent batch, frames and all.
    init(_ lent: TobyMessages, byteOrder: TobyConfiguration.ByteOrder) {
        var total = 0
        for message in lent { total += message.count + 8 }
        var starts: [Int] = []
        starts.reserveCapacity(lent.count)
        let cOrder = byteOrder.cValue
        frames = [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            var offset = 0
            for message in lent {
                let base = buffer.baseAddress! + offset
                if let framed = message.framed, message.order == cOrder {
                    UnsafeMutableRawPointer(base).copyMemory(from: framed.baseAddress!, byteCount: framed.count)
                } else {
                    toby_prefix_encode(UInt64(message.count), cOrder, base)
                    if message.count > 0 {
                        UnsafeMutableRawPointer(base + 8).copyMemory(from: message.bytes.baseAddress!, byteCount: message.count)
                    }
                }
                starts.append(offset + 8)
                offset += 8 + message.count
            }
            count = total
        }
        self.starts = starts
        self.byteOrder = byteOrder
    }

    /// Adopts one whole frame (prefix in `byteOrder`, then the payload).
    init(frame: [UInt8], byteOrder: TobyConfiguration.ByteOrder) {
        frames = frame
        starts = [Int(TOBY_PREFIX_SIZE)]
        self.byteOrder = byteOrder
    }

    /// Bytes of all the frames, prefixes included.
    var framedByteCount: Int { frames.count }
}

import CTobyFrame
