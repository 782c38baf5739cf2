/// Fixed-size buffers an event loop lends to its connections while they
/// have bytes in flight, so an idle connection holds none: ten thousand
/// idle connections share a handful of rings instead of owning 64 KiB each.
///
/// Loop-thread only.
final class BufferPool {
    let size: Int
    private var free: [UnsafeMutableRawPointer] = []
    private let keep: Int

    /// - Parameters:
    ///   - size: Bytes of each buffer.
    ///   - keep: Most idle buffers kept for reuse; the rest are freed.
    init(size: Int, keep: Int) {
        self.size = size
        self.keep = keep
    }

    deinit {
        for buffer in free { buffer.deallocate() }
    }

    func take() -> UnsafeMutableRawPointer {
        if let buffer = free.popLast() { return buffer }
        return .allocate(byteCount: size, alignment: 16)
    }

    func give(_ buffer: UnsafeMutableRawPointer) {
        if free.count < keep {
            free.append(buffer)
        } else {
            buffer.deallocate()
        }
    }
}
