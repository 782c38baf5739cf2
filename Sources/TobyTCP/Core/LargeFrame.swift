import Glibc

/// A frame too large for the ring, read straight into storage of its own:
/// one rule for the blocking receiver and the event loop's connections.
///
/// Memory follows the bytes received, so a peer cannot make us allocate what
/// it only announces. The storage starts with room for what has arrived (the
/// payload bytes in the ring and those the kernel holds for the socket, at
/// least 4 KiB) and, when full, grows by what the kernel holds then or by a
/// quarter, whichever is more, never past the announced length. So an
/// unfinished frame holds at most `max(4 KiB, 1.25 × its bytes received)`: a
/// peer that announces 32 MiB and sends one byte costs 4 KiB, while an honest
/// frame that arrives quickly takes one or two allocations instead of a
/// doubling series. Storage is never zero-filled: `recvmsg` writes every
/// byte before anyone reads it.
///
/// `headroom` bytes in front of the payload let the loop write the frame's
/// prefix there once it is complete, so the whole frame can be handed on as
/// one array (sent back as it is, or given to an async consumer) without a
/// copy.
struct LargeFrame {
    /// The least a large frame is given at first.
    static let minimumAllocation = 4096

    let headroom: Int
    /// Payload bytes announced.
    private(set) var length = 0
    /// Payload bytes read so far.
    private(set) var filled = 0
    /// Headroom, then room for the payload; empty when no frame is being read.
    private(set) var storage: [UInt8] = []

    init(headroom: Int) {
        self.headroom = headroom
    }

    /// Whether a frame is being read.
    var isActive: Bool { !storage.isEmpty }

    /// Payload bytes allocated (for tests and memory bounds).
    var allocated: Int { storage.isEmpty ? 0 : storage.count - headroom }

    /// Whether every payload byte is in.
    var isComplete: Bool { isActive && filled == length }

    /// Starts a frame of `length` payload bytes, `arrived` of which are
    /// known to have been received (buffered or queued in the kernel).
    mutating func start(length: Int, arrived: Int) {
        self.length = length
        filled = 0
        storage = LargeFrame.uninitialized(headroom + min(length, max(LargeFrame.minimumAllocation, arrived)))
    }

    /// One read into the room left, growing first if the storage is full
    /// (`queued` is asked then: the bytes the kernel holds for the socket).
    /// `read` gets the room's address and size and returns what it read (> 0),
    /// or a status (≤ 0) passed back unchanged.
    mutating func read<E: Error>(
        queued: () -> Int, _ read: (UnsafeMutableRawPointer, Int) throws(E) -> Int
    ) throws(E) -> Int {
        if headroom + filled == storage.count {
            let capacity = min(length, filled + max(queued(), filled / 4, 1))
            storage = LargeFrame.uninitialized(headroom + capacity, copying: storage, count: headroom + filled)
        }
        let offset = headroom + filled
        let room = storage.count - offset
        // withUnsafeMutableBytes rethrows untyped errors: carry the typed one out.
        var outcome: Result<Int, E> = .success(0)
        storage.withUnsafeMutableBytes { buffer in
            do throws(E) {
                outcome = .success(try read(buffer.baseAddress! + offset, room))
            } catch {
                outcome = .failure(error)
            }
        }
        let n = try outcome.get()
        if n > 0 { filled += n }
        return n
    }

    /// The complete frame's storage (headroom, then the payload), handed
    /// over; the next frame starts afresh.
    mutating func take() -> [UInt8] {
        defer { reset() }
        return storage
    }

    /// Drops the frame being read.
    mutating func reset() {
        storage = []
        filled = 0
        length = 0
    }

    /// An array of `count` bytes whose first `keep` are copied from `old`;
    /// the rest are left for `recvmsg` to write.
    private static func uninitialized(_ count: Int, copying old: [UInt8] = [], count keep: Int = 0) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if keep > 0 {
                old.withUnsafeBufferPointer { source in
                    buffer.baseAddress!.update(from: source.baseAddress!, count: keep)
                }
            }
            initialized = count
        }
    }
}

/// Bytes the kernel holds, received and unread, for socket `fd` (`FIONREAD`);
/// 0 if it cannot say.
func receivedUnread(_ fd: Int32) -> Int {
    var count: Int32 = 0
    guard ioctl(fd, UInt(FIONREAD), &count) == 0 else { return 0 }
    return Int(max(count, 0))
}
