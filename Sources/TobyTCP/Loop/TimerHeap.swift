/// A binary min-heap of deadlines, each naming what to wake by token.
///
/// Connections reset their read deadline on every frame, far more often
/// than deadlines expire, so the heap is lazy: resetting only writes the
/// connection's own deadline field, and an entry that surfaces before its
/// owner's current deadline is pushed again instead of firing (the owner
/// decides, see `EventLoop.runTimers`). The heap thus costs O(log n) per
/// expiry, never per frame, and never scans every connection.
struct TimerHeap {
    struct Entry {
        var deadline: UInt64
        var token: UInt64
    }

    private var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// The earliest deadline, or `UInt64.max` when there is none.
    var nextDeadline: UInt64 { entries.first?.deadline ?? .max }

    mutating func push(deadline: UInt64, token: UInt64) {
        entries.append(Entry(deadline: deadline, token: token))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if entries[parent].deadline <= entries[child].deadline { break }
            entries.swapAt(parent, child)
            child = parent
        }
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    mutating func popDue(now: UInt64) -> Entry? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        let last = entries.removeLast()
        if entries.isEmpty { return first }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            if left >= entries.count { break }
            let right = left + 1
            let child = right < entries.count && entries[right].deadline < entries[left].deadline ? right : left
            if entries[parent].deadline <= entries[child].deadline { break }
            entries.swapAt(parent, child)
            parent = child
        }
        return first
    }
}
