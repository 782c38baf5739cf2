import CTobyFrame
import Glibc

// The loop's side of its connections: registration under a token, the
// dirty list flushed after each batch, and the buffers they share (rings,
// the batch array, the scratch for a frame that wraps).
extension EventLoop {
    /// Takes ownership of an accepted, non-blocking descriptor.
    func adopt(fd: Int32, peer: String, server: ServerCore) {
        do throws(TobyError) {
            _ = try serve(fd: fd, peer: peer, core: server)
        } catch {
            // ENOMEM or ENOSPC (max_user_watches): refuse this one, go on.
            _ = Glibc.close(fd)
            server.noteAcceptFailure(error)
        }
    }

    /// This loop's counters for `server` (made on first use; loop only).
    func counters(for server: ServerCore) -> ServerCounters {
        if let counters = serverCounters[server.id] { return counters }
        let counters = ServerCounters()
        serverCounters[server.id] = counters
        return counters
    }

    /// Called by a connection as it closes its descriptor.
    func forget(_ connection: TobyConnection) {
        let slot = Int(connection.token & 0xffff_ffff)
        guard slot < slots.count, slots[slot] === connection else { return }
        slots[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        connectionCount -= 1
    }

    func setInterest(_ connection: TobyConnection, _ interest: UInt32) -> Int32 {
        toby_loop_modify(cLoop, connection.fd, connection.token, interest)
    }

    /// The connection wrote into its output queue: flush it after the
    /// current batch or job.
    @inline(__always)
    func markDirty(_ connection: TobyConnection) {
        dirty.append(connection)
    }

    func flushDirty() {
        while !dirty.isEmpty {
            let connections = dirty
            dirty.removeAll(keepingCapacity: true)
            for connection in connections { connection.flushAfterBatch() }
        }
    }

    func ringPool(capacity: Int) -> BufferPool {
        if let pool = rings[capacity] { return pool }
        let pool = BufferPool(size: capacity, keep: 8)
        rings[capacity] = pool
        return pool
    }

    /// Room for at least `count` messages in the batch array, keeping the
    /// first `count - 1` (those already collected).
    func reserveBatch(_ count: Int) {
        guard count > batchCapacity else { return }
        var capacity = batchCapacity
        while capacity < count { capacity *= 2 }
        let grown = UnsafeMutablePointer<TobyMessage>.allocate(capacity: capacity)
        grown.moveInitialize(from: batch, count: min(count - 1, batchCapacity))
        batch.deallocate()
        batch = grown
        batchCapacity = capacity
    }

    /// A contiguous buffer of at least `count` bytes, valid until the next call.
    func scratchBuffer(_ count: Int) -> UnsafeMutableRawPointer {
        if count > scratchCapacity {
            scratch?.deallocate()
            scratch = .allocate(byteCount: count, alignment: 16)
            scratchCapacity = count
        }
        return scratch!
    }

    /// Serves a connected, non-blocking descriptor (accepted, or a client's):
    /// registers it under a fresh token and returns its connection, opened
    /// (its handler made and told). On failure the caller still owns `fd`.
    func serve(fd: Int32, peer: String, core: ServerCore) throws(TobyError) -> TobyConnection {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = slots.count
            slots.append(nil)
            generations.append(0)
        }
        let token = UInt64(generations[slot]) << 32 | UInt64(slot)
        let rc = toby_loop_add(cLoop, fd, token, UInt32(TOBY_LOOP_READ))
        if rc != 0 {
            freeSlots.append(slot)
            throw TobyError.fromCode(Int(rc), operation: "epoll_ctl")
        }
        let connection = TobyConnection(fd: fd, peer: peer, token: token, loop: self, server: core)
        slots[slot] = connection
        connectionCount += 1
        connection.id = core.connectionOpened()
        connection.open()
        return connection
    }
}
