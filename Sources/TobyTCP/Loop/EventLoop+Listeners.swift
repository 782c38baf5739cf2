import CTobyFrame
import Glibc

// Accepting: a server's listening socket is registered in every loop
// (EPOLLEXCLUSIVE, so a new connection wakes one), and a loop that runs out
// of descriptors backs off instead of spinning.
extension EventLoop {
    final class ListenerRegistration {
        let server: ServerCore
        let token: UInt64
        var paused = false
        var backoff: UInt64 = 0

        init(server: ServerCore, token: UInt64) {
            self.server = server
            self.token = token
        }
    }

    /// Starts accepting on the server's listener (shared by every loop,
    /// each registered exclusively so one connection wakes one loop).
    func addListener(_ server: ServerCore) throws(TobyError) {
        let slot = listeners.firstIndex(where: { $0 == nil }) ?? listeners.count
        if slot == listeners.count { listeners.append(nil) }
        let token = EventLoop.listenerFlag | UInt64(server.id & 0x7fff_ffff) << 32 | UInt64(slot)
        let rc = toby_loop_add(
            cLoop, server.listenFD, token,
            UInt32(TOBY_LOOP_READ | TOBY_LOOP_EXCLUSIVE))
        if rc != 0 { throw TobyError.fromCode(Int(rc), operation: "epoll_ctl(listener)") }
        listeners[slot] = ListenerRegistration(server: server, token: token)
    }

    /// Stops accepting for `server` on this loop.
    func removeListener(_ server: ServerCore) {
        for slot in listeners.indices {
            guard let listener = listeners[slot], listener.server === server else { continue }
            if !listener.paused { _ = toby_loop_remove(cLoop, server.listenFD) }
            listeners[slot] = nil
        }
    }

    /// Closes every connection `server` accepted on this loop.
    /// Resets every connection of `server` on this loop.
    func abortConnections(of server: ServerCore) {
        for case let connection? in slots where connection.server === server {
            connection.abort()
        }
        flushDirty()
    }

    /// Stops delivering to every connection of `server` on this loop: each
    /// sends what its owner queued, ends its stream and lingers; whatever
    /// is left after the server's linger is reset.
    func quiesceConnections(of server: ServerCore) {
        let resetAt = now &+ server.options.shutdownLinger.clampedNanoseconds
        for case let connection? in slots where connection.server === server {
            connection.quiesce(resetAt: resetAt)
        }
        flushDirty()
    }

    func acceptConnections(_ listener: ListenerRegistration) {
        let server = listener.server
        var peer = [CChar](repeating: 0, count: 128)
        for _ in 0..<EventLoop.acceptsPerEvent {
            var fd: Int32 = -1
            let rc = peer.withUnsafeMutableBufferPointer {
                toby_socket_accept_nonblocking(server.listenFD, &fd, $0.baseAddress, $0.count)
            }
            if rc == 0 {
                listener.backoff = 0
                let text = peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                adopt(fd: fd, peer: server.describePeer(text), server: server)
                continue
            }
            if rc == -EAGAIN { return }
            let error = TobyError.fromCode(Int(rc), operation: "accept")
            server.noteAcceptFailure(error)
            if rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM {
                // Out of descriptors or memory: the connection stays in the
                // backlog. Stop watching the listener for a while (10 ms,
                // doubling to 1 s) instead of spinning on it; connections
                // already open go on being served, and accepting resumes by
                // itself once descriptors are free again.
                listener.backoff = listener.backoff == 0 ? 10_000_000 : min(listener.backoff * 2, 1_000_000_000)
                listener.paused = true
                _ = toby_loop_remove(cLoop, server.listenFD)
                timers.push(deadline: now + listener.backoff, token: listener.token)
            }
            // Other errors (EPERM from a firewall, EPROTO...) belong to that
            // one connection: try the next one on the next event.
            return
        }
    }

    func resumeAccepting(_ listener: ListenerRegistration) {
        guard listener.paused else { return }
        let rc = toby_loop_add(
            cLoop, listener.server.listenFD, listener.token,
            UInt32(TOBY_LOOP_READ | TOBY_LOOP_EXCLUSIVE))
        if rc == 0 || rc == -EEXIST {
            listener.paused = false
        } else {
            timers.push(deadline: now + max(listener.backoff, 10_000_000), token: listener.token)
        }
    }
}
