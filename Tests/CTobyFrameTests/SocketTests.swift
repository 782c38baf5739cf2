// The socket and epoll helpers over loopback only (127.0.0.1 and Unix
// sockets under /tmp), plus the real toby_io_system() table end to end.
import CTobyFrame
import CTobyFrame.Testing
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SocketTests: XCTestCase {
    private func isCloseOnExec(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFD)
        return flags >= 0 && flags & FD_CLOEXEC != 0
    }

    private func noDelay(_ fd: Int32) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        XCTAssertEqual(getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &v, &len), 0)
        return v
    }

    /// listen on 127.0.0.1:0, connect, accept; frames both ways through the
    /// real recvmsg/sendmsg.
    func testTCPLoopbackRoundTrip() throws {
        var lfd: Int32 = -1
        var port: UInt16 = 0
        var gai: Int32 = 0
        XCTAssertEqual(toby_socket_listen_tcp("127.0.0.1", 0, 16, &lfd, &port, &gai), 0)
        defer { close(lfd) }
        XCTAssertNotEqual(port, 0)
        XCTAssertTrue(isCloseOnExec(lfd))

        var cfd: Int32 = -1
        XCTAssertEqual(toby_socket_connect_tcp("127.0.0.1", port, &cfd, &gai), 0)
        defer { close(cfd) }
        var sfd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 64)
        XCTAssertEqual(toby_socket_accept(lfd, &sfd, &peer, peer.count), 0)
        defer { close(sfd) }
        let peerText = String(cString: peer)
        XCTAssertTrue(peerText.hasPrefix("127.0.0.1:"), peerText)
        XCTAssertTrue(isCloseOnExec(cfd) && isCloseOnExec(sfd))
        XCTAssertNotEqual(noDelay(cfd), 0, "TCP_NODELAY on connect")
        XCTAssertNotEqual(noDelay(sfd), 0, "TCP_NODELAY on accept")

        // A peer buffer too short is truncated, never overflowed.
        var cfd2: Int32 = -1
        XCTAssertEqual(toby_socket_connect_tcp("127.0.0.1", port, &cfd2, nil), 0)
        var tiny = [CChar](repeating: 0x7f, count: 6)
        var sfd2: Int32 = -1
        XCTAssertEqual(toby_socket_accept(lfd, &sfd2, &tiny, 5), 0)
        XCTAssertEqual(String(cString: tiny), "127.")
        XCTAssertEqual(tiny[5], 0x7f)
        close(cfd2)
        close(sfd2)

        // Frames through the system table.
        let frames: [[UInt8]] = [Array("toby is a good dog".utf8), [], payload(5000, seed: 1), [1]]
        let out = OutFrames(frames)
        let w = UnsafeMutablePointer<toby_writer>.allocate(capacity: 1)
        defer { w.deallocate() }
        XCTAssertEqual(toby_writer_init(w, TOBY_BIG_ENDIAN, cfd, toby_io_system()), 0)
        var index = 0
        var offset: UInt64 = 0
        let rc = out.outs.withUnsafeBufferPointer {
            toby_writer_write(w, $0.baseAddress, $0.count, &index, &offset, 0)
        }
        XCTAssertEqual(rc, 0)
        shutdown(cfd, Int32(SHUT_WR))

        let r = UnsafeMutablePointer<toby_reader>.allocate(capacity: 1)
        let ring = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        defer { r.deallocate(); ring.deallocate() }
        XCTAssertEqual(toby_reader_init(r, ring, 256, 1 << 20, TOBY_BIG_ENDIAN, sfd, toby_io_system()), 0)
        var got = [[UInt8]]()
        var f = toby_frame()
        var status: Int32 = 0
        loop: for _ in 0..<100_000 {
            let n = toby_reader_next(r, &f)
            switch n {
            case statusFrame:
                got.append(segmentBytes(f))
                toby_reader_consume(r)
            case statusDirect:
                var buf = [UInt8](repeating: 0, count: Int(f.length))
                var pos = 0
                buf.withUnsafeMutableBytes { d in
                    pos = toby_reader_direct_take(r, d.baseAddress!, d.count)
                    while pos < d.count {
                        let k = toby_reader_direct_fill(r, d.baseAddress! + pos, d.count - pos, 0)
                        if k <= 0 { break }
                        pos += k
                    }
                }
                got.append(buf)
            case statusNeedMore:
                XCTAssertGreaterThanOrEqual(toby_reader_fill(r, 0), 0)
            default:
                status = n
                break loop
            }
        }
        XCTAssertEqual(status, statusEnd)
        XCTAssertEqual(got, frames)
    }

    func testNonBlockingFillReturnsEAGAINAndWriteToClosedPeerIsEPIPE() {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        let r = UnsafeMutablePointer<toby_reader>.allocate(capacity: 1)
        let ring = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
        defer { r.deallocate(); ring.deallocate() }
        XCTAssertEqual(toby_reader_init(r, ring, 64, 100, TOBY_LITTLE_ENDIAN, fds[0], toby_io_system()), 0)
        XCTAssertEqual(toby_reader_fill(r, msgDontWait), -Int(EAGAIN))
        var f = toby_frame()
        XCTAssertEqual(toby_reader_next(r, &f), statusNeedMore, "EAGAIN is not sticky")
        close(fds[0])

        // The peer is gone: MSG_NOSIGNAL turns SIGPIPE into -EPIPE.
        let w = UnsafeMutablePointer<toby_writer>.allocate(capacity: 1)
        defer { w.deallocate() }
        XCTAssertEqual(toby_writer_init(w, TOBY_LITTLE_ENDIAN, fds[1], toby_io_system()), 0)
        let out = OutFrames([[1, 2, 3]])
        var index = 0
        var offset: UInt64 = 0
        let rc = out.outs.withUnsafeBufferPointer {
            toby_writer_write(w, $0.baseAddress, $0.count, &index, &offset, 0)
        }
        XCTAssertEqual(rc, -EPIPE)
        XCTAssertEqual(index, 0)
        XCTAssertEqual(offset, 0)
        close(fds[1])
    }

    func testUnixSockets() {
        let max = toby_socket_unix_path_max()
        XCTAssertEqual(max, 107, "Linux sun_path is 108 bytes")
        var fd: Int32 = -1
        let tooLong = "/tmp/" + String(repeating: "x", count: max - 4)
        XCTAssertEqual(tooLong.utf8.count, max + 1)
        XCTAssertEqual(toby_socket_listen_unix(tooLong, 4, &fd), -ENAMETOOLONG)
        XCTAssertEqual(toby_socket_connect_unix(tooLong, &fd), -ENAMETOOLONG)

        let path = "/tmp/ctobyframe-test-\(getpid()).sock"
        unlink(path)
        defer { unlink(path) }
        var lfd: Int32 = -1
        XCTAssertEqual(toby_socket_listen_unix(path, 4, &lfd), 0)
        defer { close(lfd) }
        var again: Int32 = -1
        XCTAssertEqual(toby_socket_listen_unix(path, 4, &again), -EADDRINUSE)
        var cfd: Int32 = -1
        XCTAssertEqual(toby_socket_connect_unix(path, &cfd), 0)
        defer { close(cfd) }
        var sfd: Int32 = -1
        var peer = [CChar](repeating: 0, count: 16)
        XCTAssertEqual(toby_socket_accept(lfd, &sfd, &peer, peer.count), 0)
        defer { close(sfd) }
        XCTAssertEqual(String(cString: peer), "pid \(getpid())", "SO_PEERCRED names the peer process")
        XCTAssertTrue(isCloseOnExec(cfd) && isCloseOnExec(sfd) && isCloseOnExec(lfd))

        // A path of exactly the maximum length fits.
        let longest = "/tmp/" + String(repeating: "y", count: max - 5)
        XCTAssertEqual(longest.utf8.count, max)
        unlink(longest)
        var lfd2: Int32 = -1
        XCTAssertEqual(toby_socket_listen_unix(longest, 4, &lfd2), 0)
        close(lfd2)
        unlink(longest)

        XCTAssertEqual(toby_socket_connect_unix("/tmp/ctobyframe-no-such-socket", &cfd), -ENOENT)
    }

    func testConnectRefusedOnLoopback() {
        // Find a free port, close it, connect: refused.
        var lfd: Int32 = -1
        var port: UInt16 = 0
        XCTAssertEqual(toby_socket_listen_tcp("127.0.0.1", 0, 1, &lfd, &port, nil), 0)
        close(lfd)
        var fd: Int32 = -1
        XCTAssertEqual(toby_socket_connect_tcp("127.0.0.1", port, &fd, nil), -ECONNREFUSED)
    }
}
