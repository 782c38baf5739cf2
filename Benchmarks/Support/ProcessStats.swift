#if canImport(Glibc)
import Glibc
#endif

/// What this process costs right now, read from /proc/self, for the echo
/// servers' thread and memory columns.
enum ProcessStats {
    /// Threads of this process: the entries of /proc/self/task.
    static func threads() -> Int {
        guard let dir = opendir("/proc/self/task") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let dot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !dot { count += 1 }
        }
        return count
    }

    /// Threads of this process once the count has held still for 20 ms (at
    /// most 1 s): detached threads of a server stopped just before (the
    /// TobyTCP loops, for one) linger in /proc/self/task for a moment after
    /// their `shutdown()` returned, and would be subtracted from the next.
    static func settledThreads() -> Int {
        var last = threads()
        var stable = 0
        for _ in 0..<200 {
            usleep(5_000)
            let now = threads()
            stable = now == last ? stable + 1 : 0
            last = now
            if stable >= 4 { break }
        }
        return last
    }

    /// Resident bytes: the second field of /proc/self/statm, in pages.
    static func residentBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return -1 }
        let fields = buffer[0..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return -1 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Gives memory that malloc holds free back to the kernel (glibc's
    /// `malloc_trim(0)`, found at run time), so a later RSS delta counts new
    /// allocations instead of reusing pages that earlier rows freed.
    static func trimHeap() {
        guard let trim = trimFunction else { return }
        _ = trim(0)
    }

    private typealias Trim = @convention(c) (Int) -> Int32
    private static let trimFunction: Trim? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
    }()

    /// The soft RLIMIT_NOFILE (which `prepareProcess` raised to the hard limit).
    static func descriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)  // RLIM_INFINITY is all ones
    }
}
