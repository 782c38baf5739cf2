import Foundation
import XCTest

@testable import TobyTCP
import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

// Issue 11: no trap or spin from the environment or an adopted socket,
// descriptor exhaustion survived, a receiver close that stops, memory that
// follows the bytes received, errors that say what they were about.

/// Runs `body` while this process cannot open a single descriptor more
/// (the soft RLIMIT_NOFILE lowered and every number below it taken), then
/// gives everything back. `spare` descriptors are closed first, so exactly
/// that many can be opened inside.
func withDescriptorsExhausted<T>(leaving spare: Int = 0, _ body: () throws -> T) throws -> T {
    var saved = rlimit()
    precondition(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) == 0)
    let open = openFileDescriptorCount()
    var lowered = saved
    lowered.rlim_cur = rlim_t(open + 16)
    precondition(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered) == 0)
    var fillers: [Int32] = []
    while true {
        let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        if fd < 0 { break }
        fillers.append(fd)
    }
    precondition(errno == EMFILE, "filling descriptors stopped with errno \(errno)")
    for _ in 0..<spare { Glibc.close(fillers.removeLast()) }
    defer {
        for fd in fillers { Glibc.close(fd) }
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
    }
    return try body()
}

/// A raw TCP client socket, made (so its descriptor exists) before it connects.
final class PendingClient {
    let fd: Int32

    init() {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0)
    }

    deinit { Glibc.close(fd) }

    func connect(port: Int) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Waits (failsafe 10 s) until the connection ends: true for an end of
    /// stream or a reset, false if it stays open.
    func seesEnd() -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 10_000) == 1 else { return false }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }
}

/// This process's virtual size, `VmSize` in /proc/self/status, in bytes.
func virtualSizeBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmSize:") {
        let digits = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }
        return (digits.first ?? -1) * 1024
    }
    return -1
}

/// CPU time this process used so far, user plus system, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
    let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    return user + system
}

/// A one-shot result handed from a thread to the test, with a deadline.
final class Mailbox<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: T?

    func put(_ newValue: T) {
        condition.lock()
        value = newValue
        condition.broadcast()
        condition.unlock()
    }

    /// The value, or nil if none came within `seconds` (a failsafe).
    func take(within seconds: Double = 30) -> T? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while value == nil && condition.wait(until: deadline) {}
        return value
    }
}

// MARK: 1. The environment never makes the library trap

final class EnvironmentFailureTests: XCTestCase {
    /// Out of descriptors, dropping a socket (its deinit closes it), every
    /// blocking receive style and a send still work: none of them needs a
    /// descriptor. (The receiver's old async receive needed a readiness
    /// poller with two of its own, which a socket's deinit once created,
    /// and trapped; both are gone.)
    func testOutOfDescriptorsNeitherDeinitNorReceiveTraps() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        var dropped: TobyMessenger?
        var otherPeer: RawPeer?
        (dropped, otherPeer) = try makePair()  // no other reference to the messenger
        let before = openFileDescriptorCount()
        try withDescriptorsExhausted {
            dropped = nil  // SocketHandle.deinit: closes, opens nothing
            peer.write(frame([1]) + frame([2]) + frame([3]) + frame([4]) + frame([5]))
            XCTAssertEqual(try receiver.receive(), [1])
            XCTAssertEqual(try receiver.receive(timeout: .seconds(10)), [2])
            XCTAssertEqual(try receiver.tryReceive(), [3])
            XCTAssertEqual(try receiver.receive { Array($0) }, [4])
            XCTAssertEqual(try receiver.receiveAvailable(), [[5]])
            try messenger.send([6])
            XCTAssertEqual(peer.read(9), frame([6]))
        }
        XCTAssertNil(dropped)
        XCTAssertEqual(otherPeer?.read(1), [], "the dropped messenger's descriptor was closed")
        XCTAssertEqual(openFileDescriptorCount(), before - 1, "and nothing was opened")
        XCTAssertNil(receiver.error)
    }

    /// pthread_create failing is an error, not a trap (here: a stack no
    /// address space can hold).
    func testThreadCreationFailureIsAnError() {
        XCTAssertThrowsError(try Threads.spawn(stackSize: 1 << 47) { XCTFail("must not run") }) { error in
            guard case .system(let operation, let code)? = error as? TobyError else { return XCTFail("\(error)") }
            XCTAssertEqual(operation, "pthread_create")
            XCTAssertTrue(code == EAGAIN || code == ENOMEM || code == EINVAL, "errno \(code)")
        }
        let ran = DispatchSemaphore(value: 0)
        XCTAssertNoThrow(try Threads.spawn { ran.signal() })
        XCTAssertEqual(ran.wait(timeout: .now() + 30), .success)
    }

    /// EMFILE in accept: a clear error at once; the pending connection is
    /// not refused but stays in the backlog, and is accepted and served once
    /// descriptors are free; the next accept pauses first, so a retrying
    /// loop does not spin; connections already accepted keep working.
    func testAcceptOutOfDescriptorsBacksOffAndRefusesNoConnection() throws {
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let first = PendingClient()
        XCTAssertEqual(first.connect(port: listener.port), 0)
        let served = try listener.accept()
        let servedReceiver = try served.start()
        let waiting = PendingClient()
        try withDescriptorsExhausted {
            XCTAssertEqual(waiting.connect(port: listener.port), 0)  // completes in the backlog
            let message = frame([9])
            XCTAssertEqual(send(waiting.fd, message, message.count, Int32(MSG_NOSIGNAL)), message.count)
            let before = monotonicNanoseconds()
            XCTAssertThrowsError(try listener.accept()) { error in
                XCTAssertEqual(error as? TobyError, .outOfDescriptors(address: listener.address, errno: EMFILE))
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("'accept' on \(listener.address) failed with '(24) Too many open files'"), text)
            }
            // Still short: the retry waits out the first pause, then fails again.
            XCTAssertThrowsError(try listener.accept())
            XCTAssertGreaterThanOrEqual(monotonicNanoseconds() - before, 10_000_000, "paused before retrying")
            XCTAssertEqual(listener.acceptFailureCount, 2)
            // The waiting client was not refused: no end of stream, no reset.
            var pfd = pollfd(fd: waiting.fd, events: Int16(POLLIN), revents: 0)
            XCTAssertEqual(poll(&pfd, 1, 0), 0, "the waiting connection is left open")
            // The accepted connection is unharmed meanwhile.
            try served.send([1, 2, 3])
            var echoed = [UInt8](repeating: 0, count: 11)
            XCTAssertEqual(recv(first.fd, &echoed, 11, Int32(MSG_WAITALL)), 11)
            XCTAssertEqual(Array(echoed[8...]), [1, 2, 3])
        }
        // Descriptors are back: the connection that waited is accepted, and
        // what it sent while it waited arrives.
        let next = try listener.accept()
        XCTAssertEqual(try next.start().receive(), [9])
        XCTAssertEqual(listener.acceptFailureCount, 2)
        _ = servedReceiver
    }
}

// MARK: 2. Adopted sockets with options set

final class AdoptedSocketTests: XCTestCase {
    private func adoptedPair(_ configure: (Int32) -> Void) throws -> (TobyMessenger, RawPeer) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        configure(fds[0])
        return (try TobyMessenger(socket: fds[0]), RawPeer(fd: fds[1]))
    }

    private static func setReceiveTimeout(_ fd: Int32, milliseconds: Int) {
        var timeout = timeval(tv_sec: 0, tv_usec: milliseconds * 1000)
        XCTAssertEqual(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)), 0)
    }

    /// SO_RCVTIMEO on an adopted socket: every receive style waits on (it
    /// used to force-unwrap a nil readTimeout in the borrowing receive).
    func testReceiveTimeoutOnAdoptedSocketNeitherTrapsNorEndsReceives() throws {
        let (messenger, peer) = try adoptedPair { AdoptedSocketTests.setReceiveTimeout($0, milliseconds: 5) }
        let receiver = try messenger.start()
        let got = Mailbox<[[UInt8]]>()
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            started.signal()
            var messages: [[UInt8]] = []
            let borrowed = try? receiver.receive { Array($0) }
            messages.append(borrowed ?? [])
            messages.append((try? receiver.receive()) ?? [] as [UInt8])
            got.put(messages)
        }
        started.wait()
        // Let SO_RCVTIMEO expire under the blocked receive several times: a
        // measurement window, not synchronisation (the result is waited for).
        usleep(50_000)
        peer.write(frame([1]))
        peer.write(frame([2]))
        XCTAssertEqual(got.take(), [[1], [2]])
    }

    /// O_NONBLOCK on an adopted socket: an idle receive waits in poll
    /// instead of spinning (it used to burn a core while holding the lock).
    func testNonBlockingAdoptedSocketDoesNotSpin() throws {
        let (messenger, peer) = try adoptedPair { fd in
            XCTAssertEqual(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0)
        }
        let receiver = try messenger.start()
        let got = Mailbox<[UInt8]>()
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            started.signal()
            got.put((try? receiver.receive()) ?? [0xff])
        }
        started.wait()
        let cpuBefore = processCPUSeconds()
        usleep(300_000)  // measurement window: CPU used while the receive is idle
        let cpuUsed = processCPUSeconds() - cpuBefore
        XCTAssertLessThan(cpuUsed, 0.1, "an idle receive used \(cpuUsed) s of CPU in 0.3 s")
        // Sending through a non-blocking socket waits for room too: more
        // than the socket buffer holds, read by the peer meanwhile.
        let big = pattern(4 << 20, seed: 3)
        let reader = Mailbox<[UInt8]>()
        Thread.detachNewThread { reader.put(peer.read(8 + big.count)) }
        try messenger.send(big)
        XCTAssertEqual(reader.take(), frame(big))
        peer.write(frame([5, 6]))
        XCTAssertEqual(got.take(), [5, 6])
        // Timed and non-blocking styles keep their meaning.
        XCTAssertNil(try receiver.tryReceive())
        XCTAssertThrowsError(try receiver.receive(timeout: .milliseconds(20))) { error in
            XCTAssertEqual(error as? TobyError, .timedOut(.milliseconds(20)))
        }
    }
}

// MARK: 3. receiver.close() stops

final class ReceiverCloseTests: XCTestCase {
    /// After close() returns nothing more is delivered, not even what was
    /// buffered, and every style returns its end at once.
    func testCloseDeliversNothingMoreInAnyStyle() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]) + frame([3]) + frame(pattern(100_000, seed: 9)))
        XCTAssertEqual(try receiver.receive(), [1])  // [2], [3] and part of the large one are now buffered
        receiver.close()
        XCTAssertNil(try receiver.receive())
        XCTAssertNil(try receiver.receive(timeout: .seconds(30)))
        XCTAssertNil(try receiver.receive { _ in XCTFail("delivered after close") })
        XCTAssertThrowsError(try receiver.tryReceive()) { XCTAssertEqual($0 as? TobyError, .closed) }
        XCTAssertEqual(try receiver.receiveAvailable(), [])
        XCTAssertEqual(Array(receiver), [], "blocking iteration ends at once")
        XCTAssertNil(receiver.error)
        // The messenger still sends.
        try messenger.send([4])
        XCTAssertEqual(peer.read(9), frame([4]))
    }

    /// A receive blocked when close() is called returns the end, and a peer
    /// that keeps sending over TCP gets nothing delivered (Linux TCP goes on
    /// queueing after shutdown(SHUT_RD)) and is stopped by flow control:
    /// the kernel queues only a few KiB for the closed receiver.
    func testCloseStopsAPeerThatKeepsSending() throws {
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let peer = PendingClient()
        XCTAssertEqual(peer.connect(port: listener.port), 0)
        let server = try listener.accept()
        let receiver = try server.start()
        let blocked = Mailbox<[UInt8]?>()
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            started.signal()
            blocked.put(try? receiver.receive())
        }
        started.wait()
        receiver.close()
        guard case .some(let afterClose) = blocked.take() else { return XCTFail("the blocked receive did not return") }
        XCTAssertNil(afterClose)

        // The peer sends whole frames without blocking until the kernel stops it.
        XCTAssertEqual(fcntl(peer.fd, F_SETFL, fcntl(peer.fd, F_GETFL) | O_NONBLOCK), 0)
        let chunk = frame([UInt8](repeating: 0x61, count: 1000))
        var accepted = 0
        while accepted < 64 << 20 {
            let n = send(peer.fd, chunk, chunk.count, Int32(MSG_NOSIGNAL))
            if n < 0 { break }
            accepted += n
        }
        XCTAssertTrue(errno == EAGAIN || errno == EWOULDBLOCK, "errno \(errno)")
        XCTAssertLessThan(accepted, 32 << 20, "the peer was never stopped")
        for _ in 0..<3 {
            XCTAssertNil(try receiver.receive())
            XCTAssertNil(try receiver.receive { _ in XCTFail("delivered after close") })
        }
        var queued: Int32 = 0
        XCTAssertEqual(ioctl(server.socket.fd, UInt(FIONREAD), &queued), 0)
        print("closed receiver: peer accepted \(accepted) bytes, \(queued) queued here")
        XCTAssertLessThanOrEqual(queued, 16 << 10, "bytes the kernel queued for a closed receiver")
    }

    /// close() from inside a borrowing receive's body does not deadlock.
    func testCloseFromInsideTheBorrowingBody() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        peer.write(frame([1]) + frame([2]))
        let first = try receiver.receive { bytes -> [UInt8] in
            receiver.close()
            return Array(bytes)
        }
        XCTAssertEqual(first, [1])
        XCTAssertNil(try receiver.receive())
    }
}

// MARK: 4. Memory follows the bytes received

final class MemoryFollowsBytesTests: XCTestCase {
    /// A frame too large for the ring starts small and grows only as its
    /// bytes arrive: never more than 1.25 times what arrived (or 4 KiB).
    func testLargeFrameBufferGrowsWithTheBytesThatArrived() throws {
        let (messenger, peer) = try makePair()
        let receiver = try messenger.start()
        XCTAssertEqual(receiver.allocationForTesting.ring, false, "the ring is allocated by the first receive")
        let payload = pattern(2 << 20, seed: 4)
        peer.write(TobyProtocol.prefix(length: UInt64(payload.count)) + [payload[0]])
        XCTAssertNil(try receiver.tryReceive())
        XCTAssertEqual(receiver.allocationForTesting.ring, true)
        XCTAssertLessThanOrEqual(receiver.allocationForTesting.large, 4096)
        var arrived = 1
        for size in [10, 1000, 10_000, 100_000, 1_000_000] {
            let chunk = Array(payload[arrived..<(arrived + size)])
            let writer = Thread { peer.write(chunk) }  // may exceed the socket buffer
            writer.start()
            arrived += size
            // Read until every byte sent so far is in (failsafe 30 s).
            let deadline = Date().addingTimeInterval(30)
            while receiver.allocationForTesting.filled < arrived, Date() < deadline {
                XCTAssertThrowsError(try receiver.receive(timeout: .milliseconds(5)))
            }
            XCTAssertEqual(receiver.allocationForTesting.filled, arrived)
            let allocated = receiver.allocationForTesting.large
            XCTAssertGreaterThanOrEqual(allocated, arrived)
            XCTAssertLessThanOrEqual(allocated, max(4096, arrived + arrived / 4), "after \(arrived) bytes")
        }
        let rest = Array(payload[arrived...])
        let writer = Thread { peer.write(rest) }
        writer.start()
        XCTAssertEqual(try receiver.receive(), payload)
        XCTAssertEqual(receiver.allocationForTesting.large, 0)
    }

    /// 200 peers announcing 32 MiB and sending one byte cost at most 200 KiB
    /// of virtual memory each (under vm.overcommit_memory=2 virtual size is
    /// what counts). It used to be min(length, 1 MiB) plus the ring plus the
    /// writer: about 1,149 KiB each.
    func testPeersThatClaimMuchAndSendLittleCostLittleVirtualMemory() throws {
        let peers = 200
        // Warm up whatever the first connection allocates once per process.
        do {
            let (messenger, peer) = try makePair()
            let receiver = try messenger.start()
            peer.write(TobyProtocol.prefix(length: 32 << 20) + [1])
            XCTAssertNil(try receiver.tryReceive())
        }
        var connections: [(TobyMessenger, TobyReceiver, RawPeer)] = []
        connections.reserveCapacity(peers)
        let before = virtualSizeBytes()
        for _ in 0..<peers {
            let (messenger, peer) = try makePair()
            let receiver = try messenger.start()
            peer.write(TobyProtocol.prefix(length: 32 << 20) + [1])
            XCTAssertNil(try receiver.tryReceive())  // reads the prefix and the byte
            connections.append((messenger, receiver, peer))
        }
        let after = virtualSizeBytes()
        let each = (after - before) / peers
        print("virtual size: \(before >> 10) KiB -> \(after >> 10) KiB, \(each >> 10) KiB per peer")
        XCTAssertGreaterThan(before, 0)
        XCTAssertLessThanOrEqual(each, 200 << 10, "virtual memory per peer announcing 32 MiB and sending 1 byte")
        let allocations = Set(connections.map { $0.1.allocationForTesting.large })
        XCTAssertEqual(allocations, [4096], "each large frame's storage")
    }

    /// The writer's buffers are allocated by the first send, not by the messenger.
    func testSendBuffersAreAllocatedOnFirstUse() throws {
        let before = virtualSizeBytes()
        var pairs: [(TobyMessenger, RawPeer)] = []
        for _ in 0..<200 { pairs.append(try makePair()) }
        let each = (virtualSizeBytes() - before) / 200
        XCTAssertLessThan(each, 16 << 10, "a messenger that never sent costs \(each) bytes of virtual memory")
        for (messenger, peer) in pairs.prefix(3) {
            try messenger.send([1])
            XCTAssertEqual(peer.read(9), frame([1]))
        }
    }
}

// MARK: 7. Errors that say what they were about

final class HelpfulErrorTests: XCTestCase {
    func testConnectRefusedNamesTheAddress() throws {
        let listener = try TobyListener(port: 0)
        let port = listener.port
        listener.close()
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port)) { error in
            XCTAssertEqual("\(error)", "'connect' to 127.0.0.1:\(port) failed with '(111) Connection refused'")
            XCTAssertEqual((error as? TobyError)?.systemErrno, ECONNREFUSED)
        }
        XCTAssertThrowsError(try TobyMessenger.connect(unixPath: "/nonexistent-toby-dir/sock")) { error in
            XCTAssertEqual("\(error)", "'connect' to unix:/nonexistent-toby-dir/sock failed with '(2) No such file or directory'")
        }
    }

    func testBindInUseNamesTheAddress() throws {
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        XCTAssertThrowsError(try TobyListener(host: "127.0.0.1", port: listener.port)) { error in
            XCTAssertEqual("\(error)", "'bind/listen' on 127.0.0.1:\(listener.port) failed with '(98) Address already in use'")
        }
    }

    /// A prefix over the limit that is a plausible length read the other way
    /// round says which byte order the peer may be using.
    func testFrameTooLargeSuggestsTheOtherByteOrder() throws {
        for (ours, theirs) in [
            (TobyConfiguration.ByteOrder.littleEndian, TobyConfiguration.ByteOrder.bigEndian), (.bigEndian, .littleEndian),
        ] {
            let (messenger, peer) = try makePair(try TobyConfiguration(byteOrder: ours, maxFrameLength: 1 << 20))
            let receiver = try messenger.start()
            peer.write(frame([1, 2, 3, 4, 5], theirs))
            XCTAssertThrowsError(try receiver.receive()) { error in
                let text = "\(error)"
                let expected =
                    theirs == .bigEndian
                    ? "the peer may be using big-endian prefixes: set byteOrder: .bigEndian"
                    : "the peer may be using little-endian prefixes: set byteOrder: .littleEndian"
                XCTAssertTrue(text.contains(expected), text)
                XCTAssertTrue(text.contains("it would be 5 bytes"), text)
            }
        }
        // No hint when neither reading is plausible.
        let far = TobyError.frameTooLarge(length: UInt64.max, limit: 1000, prefix: [UInt8](repeating: 0xff, count: 8))
        XCTAssertFalse(far.description.contains("byteOrder"), far.description)
        let near = TobyError.frameTooLarge(
            length: 0x0102_0304_0506_0708, limit: 1000, prefix: TobyProtocol.prefix(length: 0x0102_0304_0506_0708))
        XCTAssertFalse(near.description.contains("byteOrder"), near.description)
    }
}
