import CTobyFrame  // its header includes <sys/socket.h>, which then owns SOCK_STREAM for this target

#if canImport(Glibc)
import Glibc
#endif

/// Plain blocking loopback sockets with Glibc, shared by the pure-Swift codec
/// and the kernel ceiling. Everything binds and connects to 127.0.0.1 only.
enum RawSocket {
    static func check(_ rc: Int32, _ call: String) throws {
        if rc < 0 { throw BenchError.system(call, errno) }
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    static func setNoDelay(_ fd: Int32) throws {
        var one: Int32 = 1
        try check(
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)), "setsockopt(TCP_NODELAY)")
    }

    /// A listening socket on 127.0.0.1 and an ephemeral port.
    static func listen() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try check(fd, "socket")
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try check(bound, "bind")
        try check(Glibc.listen(fd, 1024), "listen")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        try check(named, "getsockname")
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try check(fd, "socket")
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc < 0 {
            let err = errno
            close(fd)
            throw BenchError.system("connect", err)
        }
        try setNoDelay(fd)
        return fd
    }

    static func accept(_ listener: Int32) throws -> Int32 {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            if fd < 0 && errno == EINTR { continue }
            try check(fd, "accept")
            try setNoDelay(fd)
            return fd
        }
    }

    /// `count` connected (client, server) pairs over one temporary listener.
    static func pairs(_ count: Int) throws -> [(client: Int32, server: Int32)] {
        let (listener, port) = try listen()
        defer { close(listener) }
        var result: [(client: Int32, server: Int32)] = []
        for _ in 0..<count {
            let client = try connect(port: port)
            result.append((client, try accept(listener)))
        }
        return result
    }

    /// Writes every byte, looping over partial writes.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError.system("write", errno)
            }
            offset += n
        }
    }

    /// Fills `buffer` exactly. Returns false on a clean end of stream before
    /// the first byte; throws on an end in the middle.
    static func readExactly(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        var offset = 0
        while offset < buffer.count {
            let n = read(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError.system("read", errno)
            }
            if n == 0 {
                if offset == 0 { return false }
                throw BenchError.integrity("stream ended inside a frame")
            }
            offset += n
        }
        return true
    }

    /// One `read`; 0 at end of stream.
    static func readSome(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = read(fd, buffer.baseAddress!, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError.system("read", errno)
            }
            return n
        }
    }
}

/// Process-wide setup: no SIGPIPE, enough descriptors for 256 connections.
func prepareProcess() {
    signal(SIGPIPE, SIG_IGN)
    var limit = rlimit()
    if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
}
