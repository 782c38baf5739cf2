#if canImport(Glibc)
import Glibc
#endif

/// Counts the process's write-family syscalls (write, writev, pwrite*,
/// send, sendto, sendmsg, sendmmsg) during a measurement.
///
/// Why not /proc/self/io `syscw`: Linux increments it only in the VFS write
/// paths (write, writev, pwrite*); `sendmsg`/`sendto` go through the socket
/// layer and are not counted, so a library that sends with `sendmsg` (as
/// TobyTCP does) would show 0 writes. Instead this opens one counting-mode
/// perf event per syscall tracepoint (`syscalls:sys_enter_*`) on every
/// thread of the process, with `inherit` so threads created during the
/// measurement are counted too. Counting is done in the kernel with no
/// stop of the traced threads, so the timed run is not slowed down.
final class WriteSyscalls {
    static let syscalls = ["write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg"]

    private var descriptors: [Int32] = []

    /// Starts counting, or returns nil where perf events or tracefs are not
    /// available (then the figure is reported as n/a).
    static func start() -> WriteSyscalls? {
        guard let ids = tracepointIDs, let open = perfEventOpen else { return nil }
        let counter = WriteSyscalls()
        for thread in threads() {
            for id in ids {
                let fd = open(id, thread)
                if fd < 0 {
                    if errno == ESRCH { break }  // the thread just exited
                    counter.close()
                    return nil
                }
                counter.descriptors.append(fd)
            }
        }
        return counter
    }

    /// Stops counting and returns the total.
    func stop() -> UInt64? {
        var total: UInt64 = 0
        for fd in descriptors {
            var value: UInt64 = 0
            guard read(fd, &value, 8) == 8 else {
                close()
                return nil
            }
            total += value
        }
        close()
        return total
    }

    deinit { close() }

    private func close() {
        for fd in descriptors { Glibc.close(fd) }
        descriptors = []
    }

    /// True if counting works here (checked once, with 10 writes).
    static let works: Bool = {
        guard let counter = start() else { return false }
        let fd = open("/dev/null", O_WRONLY)
        var byte: UInt8 = 0
        for _ in 0..<10 { _ = write(fd, &byte, 1) }
        Glibc.close(fd)
        return (counter.stop() ?? 0) >= 10
    }()

    /// The thread ids of this process.
    private static func threads() -> [Int32] {
        guard let dir = opendir("/proc/self/task") else { return [getpid()] }
        defer { closedir(dir) }
        var result: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let tid = Int32(name) { result.append(tid) }
        }
        return result
    }

    /// The tracepoint ids of `sys_enter_<syscall>`, or nil without tracefs.
    private static let tracepointIDs: [UInt64]? = {
        for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            let ids = syscalls.compactMap { readNumber("\(root)/events/syscalls/sys_enter_\($0)/id") }
            if ids.count == syscalls.count { return ids }
        }
        return nil
    }()

    private static func readNumber(_ path: String) -> UInt64? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n > 0 else { return nil }
        return UInt64(String(decoding: buffer[0..<n], as: UTF8.self).filter(\.isNumber))
    }

    /// perf_event_open(2) for a counting tracepoint event on one thread.
    ///
    /// Glibc has no wrapper and Swift cannot call the variadic `syscall(2)`,
    /// so it is called through a fixed-argument pointer (glibc's `syscall`
    /// only moves registers, which is sound on x86-64 and arm64 Linux).
    private static let perfEventOpen: (@Sendable (UInt64, Int32) -> Int32)? = {
        #if arch(x86_64)
        let number = 298
        #elseif arch(arm64)
        let number = 241
        #else
        return nil
        #endif
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syscall") else { return nil }
        typealias Syscall = @convention(c) (Int, UnsafeMutableRawPointer, Int32, Int32, Int32, UInt) -> Int
        let syscall = unsafeBitCast(symbol, to: Syscall.self)
        return { tracepoint, thread in
            // struct perf_event_attr, PERF_ATTR_SIZE_VER0 (64 bytes).
            let attr = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
            defer { attr.deallocate() }
            attr.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
            attr.storeBytes(of: UInt32(2), toByteOffset: 0, as: UInt32.self)  // PERF_TYPE_TRACEPOINT
            attr.storeBytes(of: UInt32(64), toByteOffset: 4, as: UInt32.self)  // size
            attr.storeBytes(of: tracepoint, toByteOffset: 8, as: UInt64.self)  // config
            attr.storeBytes(of: UInt64(1 << 1), toByteOffset: 40, as: UInt64.self)  // inherit
            let fd = syscall(number, attr, thread, -1, -1, 8 /* PERF_FLAG_FD_CLOEXEC */)
            return Int32(truncatingIfNeeded: fd)
        }
    }()
}

extension Sample {
    /// Throughput plus write syscalls per message (when they could be counted).
    static func shared(messages: Int, nanoseconds: UInt64, writes counter: WriteSyscalls?) -> Sample {
        var sample = Sample.throughput(messages: messages, size: 64, nanoseconds: nanoseconds)
        if let writes = counter?.stop() {
            sample.metrics["writes_per_msg"] = Double(writes) / Double(messages)
        }
        return sample
    }
}
