import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// The raw-bytes kernel echo ceiling: one thread per core, each with its own
/// epoll instance (CTobyFrame's `toby_loop`, level-triggered) on the shared
/// non-blocking listener (`EPOLLEXCLUSIVE`, as `TobyServer` does). A
/// readable connection gets one `recv` of up to 256 KiB and the bytes go
/// straight back with one `send`: no framing, no parsing, no per-connection
/// buffer unless the kernel took only part of a reply (then the rest waits
/// for writability and the connection is not read meanwhile). What any
/// framed echo on epoll can at best approach.
final class KernelEchoServer: EchoServer, @unchecked Sendable {
    final class Shared: @unchecked Sendable {
        let lock = Lock()
        var open = 0
        var stopping = false
    }

    static let listenerToken = UInt64.max - 1
    static let bufferSize = 256 << 10

    let port: Int
    private let listenFD: Int32
    private let loops: [UnsafeMutablePointer<toby_loop>]
    private let shared = Shared()
    private var workers: [Worker] = []

    init(threads: Int) throws {
        let (fd, port) = try RawSocket.listen()
        listenFD = fd
        self.port = Int(port)
        _ = toby_socket_set_nonblocking(fd, 1)
        var loops: [UnsafeMutablePointer<toby_loop>] = []
        for _ in 0..<threads {
            let loop = UnsafeMutablePointer<toby_loop>.allocate(capacity: 1)
            var rc = toby_loop_open(loop, toby_loop_io_system())
            if rc == 0 {
                rc = toby_loop_add(loop, fd, KernelEchoServer.listenerToken, UInt32(TOBY_LOOP_READ | TOBY_LOOP_EXCLUSIVE))
                if rc != 0 { toby_loop_close(loop) }
            }
            if rc != 0 {
                loop.deallocate()
                for loop in loops {
                    toby_loop_close(loop)
                    loop.deallocate()
                }
                Glibc.close(fd)
                throw BenchError.system("toby_loop_open/add", -rc)
            }
            loops.append(loop)
        }
        self.loops = loops
        let shared = self.shared
        workers = loops.map { loop in
            let box = UnsafeSendable(loop)
            return Worker { KernelEchoServer.serve(box.value, listenFD: fd, shared: shared) }
        }
    }

    var accepted: Int { shared.lock.withLock { shared.open } }

    func stop() {
        shared.lock.withLock { shared.stopping = true }
        for loop in loops { _ = toby_loop_wake(loop) }
        for worker in workers { worker.join() }
        for loop in loops {
            toby_loop_close(loop)
            loop.deallocate()
        }
        Glibc.close(listenFD)
    }

    /// One loop thread until `stop()`. Tokens are descriptor numbers: an
    /// event for a descriptor closed earlier in the same batch is skipped
    /// (`open` no longer holds it); if accept reused the number meanwhile,
    /// the stale event costs one `recv` that finds nothing (EAGAIN).
    private static func serve(_ loop: UnsafeMutablePointer<toby_loop>, listenFD: Int32, shared: Shared) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
        defer { buffer.deallocate() }
        var events = [toby_loop_event](repeating: toby_loop_event(), count: Int(TOBY_LOOP_MAX_EVENTS))
        var open = Set<Int32>()
        var pending: [Int32: [UInt8]] = [:]  // unsent echo bytes, only after a partial send
        let read = UInt32(TOBY_LOOP_READ), write = UInt32(TOBY_LOOP_WRITE)
        let readable = UInt32(TOBY_LOOP_READ | TOBY_LOOP_HANGUP | TOBY_LOOP_ERROR)

        func drop(_ fd: Int32) {
            open.remove(fd)
            pending[fd] = nil
            Glibc.close(fd)
            shared.lock.withLock { shared.open -= 1 }
        }

        /// Sends `bytes`; keeps what the kernel refused and watches writability.
        /// False if the connection broke.
        func reply(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, wasPending: Bool) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { break }
                    return false
                }
                offset += n
            }
            if offset < bytes.count {
                pending[fd] = Array(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                if !wasPending { _ = toby_loop_modify(loop, fd, UInt64(fd), write) }
            } else if wasPending {
                pending[fd] = nil
                _ = toby_loop_modify(loop, fd, UInt64(fd), read)
            }
            return true
        }

        while !shared.lock.withLock({ shared.stopping }) {
            let count = toby_loop_wait(loop, &events, Int32(events.count), -1)
            if count < 0 { break }
            for event in events[0..<Int(count)] {
                if event.token == listenerToken {
                    while true {
                        // (accept4 is hidden behind _GNU_SOURCE; accept is outside the clock.)
                        let fd = Glibc.accept(listenFD, nil, nil)
                        if fd < 0 { break }  // EAGAIN, or out of descriptors: level-triggered, tried again
                        _ = toby_socket_set_nonblocking(fd, 1)
                        _ = try? RawSocket.setNoDelay(fd)
                        if toby_loop_add(loop, fd, UInt64(fd), read) != 0 {
                            Glibc.close(fd)
                            continue
                        }
                        open.insert(fd)
                        shared.lock.withLock { shared.open += 1 }
                    }
                    continue
                }
                let fd = Int32(truncatingIfNeeded: event.token)
                guard open.contains(fd) else { continue }
                if let rest = pending[fd] {
                    if event.events & (write | UInt32(TOBY_LOOP_ERROR | TOBY_LOOP_HANGUP)) != 0 {
                        let ok = rest.withUnsafeBytes { reply(fd, $0, wasPending: true) }
                        if !ok { drop(fd) }
                    }
                    continue
                }
                guard event.events & readable != 0 else { continue }
                let n = recv(fd, buffer.baseAddress, buffer.count, 0)
                if n > 0 {
                    if !reply(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), wasPending: false) { drop(fd) }
                } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    drop(fd)
                }
            }
        }
        for fd in open { Glibc.close(fd) }
        shared.lock.withLock { shared.open -= open.count }
    }
}

/// Hands a value the caller knows to be safe to another thread.
struct UnsafeSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
