import CTobyFrame
import Foundation
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// TobyServer on real loopback sockets: the handler API, foreign-thread
/// sends, closes, errors after complete frames, back-pressure, timeouts.
final class ServerTests: XCTestCase {
    private func echoServer(
        _ configuration: TobyConfiguration = .default, options: TobyServer.Options = .init(), threads: Int = 2
    ) throws -> TobyServer {
        let group = try TobyEventLoopGroup(threads: threads)
        addTeardownBlock { group.shutdown() }
        return try TobyServer.listen(port: 0, configuration: configuration, options: options, group: group) { _ in
            EchoHandler()
        }
    }

    private func recordingServer(
        _ events: ServerEvents, echo: Bool = false, _ configuration: TobyConfiguration = .default,
        options: TobyServer.Options = .init()
    ) throws -> TobyServer {
        let group = try TobyEventLoopGroup(threads: 2)
        addTeardownBlock { group.shutdown() }
        return try TobyServer.listen(port: 0, configuration: configuration, options: options, group: group) { _ in
            RecordingHandler(events: events, echo: echo)
        }
    }

    func testEchoOfEverySizeAroundTheRingAndDirectFrames() throws {
        let server = try echoServer()
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        let sizes = [0, 1, 7, 8, 9, 100, 4096, 65_519, 65_520, 65_527, 65_528, 65_529, 70_000, 200_000, 1 << 20, 3]
        let payloads = sizes.enumerated().map { pattern($0.element, seed: UInt64($0.offset)) }
        try client.send(contentsOf: payloads)
        for expected in payloads {
            XCTAssertEqual(try receiver.receive(), expected)
        }
        try client.close()
        XCTAssertNil(try receiver.receive(), "the server ends its side after the client's end")
    }

    /// Ten thousand small frames pipelined in one go: the ring wraps many
    /// times, frames straddle its end, and every echo comes back in order.
    func testPipelinedSmallFramesWrapTheRingInOrder() throws {
        let server = try echoServer(try TobyConfiguration(ringCapacity: 256))
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        var rng = SplitMix64(state: 9)
        let payloads = (0..<10_000).map { i in pattern(Int(rng.next() % 120), seed: UInt64(i)) }
        try client.send(contentsOf: payloads)
        try client.close()
        var got = 0
        while let message = try receiver.receive() {
            XCTAssertEqual(message, payloads[got], "message \(got)")
            got += 1
        }
        XCTAssertEqual(got, payloads.count)
    }

    /// A read of the default 64 KiB ring full of tiny frames: thousands of
    /// messages in one batch (more than the batch array starts with).
    func testThousandsOfTinyFramesInOneRead() throws {
        let server = try echoServer()
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        let payloads = (0..<30_000).map { $0 % 3 == 0 ? [] : [UInt8($0 & 0xff)] }
        peer.write(payloads.flatMap { frame($0) })
        for (i, payload) in payloads.enumerated() {
            guard let echoed = peer.readFrame() else { return XCTFail("stream ended at \(i)") }
            if echoed != payload { return XCTFail("message \(i): \(echoed) != \(payload)") }
        }
    }

    /// Every split point of a two-frame stream, written in two pieces.
    func testEverySplitPointOfTwoFrames() throws {
        let server = try echoServer()
        defer { server.close() }
        let first = pattern(20, seed: 1)
        let second = pattern(5, seed: 2)
        let stream = frame(first) + frame(second)
        for split in 0...stream.count {
            let peer = try connectRaw(port: server.port)
            peer.setReceiveTimeout(seconds: 10)
            peer.write(Array(stream[..<split]))
            peer.write(Array(stream[split...]))
            XCTAssertEqual(peer.readFrame(), first, "split \(split)")
            XCTAssertEqual(peer.readFrame(), second, "split \(split)")
        }
    }

    func testTwoThousandConnectionsAllIntactAndNoDescriptorLeak() throws {
        let limit = raiseDescriptorLimit()
        let connections = min(2000, (limit - 200) / 2)
        XCTAssertGreaterThanOrEqual(connections, 500, "descriptor limit \(limit) too low for this test")
        let server = try echoServer(options: .init(backlog: 4096))
        // Warm up once-per-process descriptors before counting.
        let warm = try connectRaw(port: server.port)
        warm.write(frame([1]))
        XCTAssertEqual(warm.readFrame(), [1])
        warm.closeNow()
        let before = openFileDescriptorCount()

        let threads = 8
        let failures = ServerEvents()
        onThreads(threads) { t in
            var peers: [RawPeer] = []
            for c in stride(from: t, to: connections, by: threads) {
                guard let peer = try? connectRaw(port: server.port) else {
                    failures.close(.closed)
                    return
                }
                peer.setReceiveTimeout(seconds: 20)
                var bytes: [UInt8] = []
                for m in 0..<100 { bytes += frame([UInt8(c & 0xff), UInt8(c >> 8), UInt8(m)]) }
                peer.write(bytes)
                peers.append(peer)
            }
            for (i, peer) in peers.enumerated() {
                let c = t + i * threads
                for m in 0..<100 where peer.readFrame() != [UInt8(c & 0xff), UInt8(c >> 8), UInt8(m)] {
                    failures.close(.truncatedFrame(expected: UInt64(c), received: UInt64(m)))
                    break
                }
                peer.closeNow()
            }
        }
        XCTAssertEqual(failures.closed.count, 0, "connections with a wrong or missing echo: \(failures.closed.prefix(5))")
        let drained = ServerEvents().wait { server.connectionCount == 0 }
        XCTAssertTrue(drained, "\(server.connectionCount) connections still open")
        // At most as many as before: other tests' sockets may close meanwhile
        // (their owners are released on other threads), but a leak adds.
        let after = openFileDescriptorCount()
        XCTAssertLessThanOrEqual(after, before, "file descriptors leaked")
        server.close()
        XCTAssertEqual(openFileDescriptorCount(), after - 1, "the listener is closed")
    }

    func testFrameTooLargeReportedAfterTheCompleteFrames() throws {
        let events = ServerEvents()
        let server = try recordingServer(events, echo: true, try TobyConfiguration(maxFrameLength: 100))
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        peer.write(frame([1]) + frame([2, 2]) + TobyProtocol.prefix(length: 101) + [0, 0])
        XCTAssertEqual(peer.readFrame(), [1])
        XCTAssertEqual(peer.readFrame(), [2, 2])
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.received, [[1], [2, 2]])
        XCTAssertEqual(
            events.closed.first ?? nil, .frameTooLarge(length: 101, limit: 100, prefix: TobyProtocol.prefix(length: 101)))
        XCTAssertNil(peer.readFrame(), "the connection ends after the replies")
    }

    func testTruncatedFrameSaysHowManyBytesWereMissing() throws {
        let events = ServerEvents()
        let server = try recordingServer(events, echo: true)
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        peer.write(frame([7, 7, 7]) + TobyProtocol.prefix(length: 10) + [1, 2, 3])
        peer.shutdownWrite()
        XCTAssertEqual(peer.readFrame(), [7, 7, 7], "the complete frame is still answered")
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.received, [[7, 7, 7]])
        let error = events.closed.first ?? nil
        XCTAssertEqual(error, .truncatedFrame(expected: 18, received: 11))
        XCTAssertEqual(error?.missingBytes, 7)
    }

    func testResetIsReportedAfterTheCompleteFrames() throws {
        let events = ServerEvents()
        let server = try recordingServer(events)
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.write(frame([1]) + frame([2]))
        XCTAssertTrue(events.waitForMessages(2))
        peer.reset()
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.received, [[1], [2]])
        XCTAssertEqual(events.closed.first ?? nil, .system(operation: "recvmsg", errno: ECONNRESET))
    }

    func testCleanEndIsReportedAsNoError() throws {
        let events = ServerEvents()
        let server = try recordingServer(events)
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.write(frame([1, 2, 3]))
        peer.shutdownWrite()
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.received, [[1, 2, 3]])
        XCTAssertEqual(events.closed.count, 1)
        XCTAssertNil(events.closed[0])
        XCTAssertEqual(peer.readEndErrno(), 0, "the peer sees a clean end of stream")
    }

    /// Eight threads that are not the loop's send into one connection at
    /// once: every thread's messages arrive, each thread's in its order.
    func testForeignThreadsKeepEachSendersOrder() throws {
        let events = ServerEvents()
        let server = try recordingServer(events)
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        XCTAssertTrue(events.waitForConnections(1))
        let connection = events.connections[0]
        let perThread = 2000
        onThreads(8) { t in
            for i in 0..<perThread {
                try! connection.send([UInt8(t), UInt8(i & 0xff), UInt8(i >> 8)])
            }
        }
        var next = [Int](repeating: 0, count: 8)
        for _ in 0..<(8 * perThread) {
            guard let message = try receiver.receive(), message.count == 3 else { return XCTFail("stream ended early") }
            let t = Int(message[0])
            XCTAssertEqual(Int(message[1]) | Int(message[2]) << 8, next[t], "thread \(t) out of order")
            next[t] += 1
        }
        XCTAssertEqual(next, [Int](repeating: perThread, count: 8))
    }

    /// close() from another thread sends everything accepted before it,
    /// then ends the stream; later sends are refused.
    func testCloseLosesNothing() throws {
        let events = ServerEvents()
        let server = try recordingServer(events)
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        XCTAssertTrue(events.waitForConnections(1))
        let connection = events.connections[0]
        let payloads = (0..<20_000).map { pattern(1 + $0 % 300, seed: UInt64($0)) }
        for payload in payloads { try connection.send(payload) }
        connection.close()
        XCTAssertThrowsError(try connection.send([1])) { XCTAssertEqual($0 as? TobyError, .closed) }
        var got = 0
        while let message = try receiver.receive() {
            XCTAssertEqual(message, payloads[got])
            got += 1
        }
        XCTAssertEqual(got, payloads.count, "every accepted message before the end of stream")
        try client.close()
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertNil(events.closed[0])
    }

    func testAbortResetsThePeer() throws {
        let events = ServerEvents()
        let server = try recordingServer(events)
        defer { server.close() }
        let peer = try connectRaw(port: server.port)
        peer.setReceiveTimeout(seconds: 10)
        XCTAssertTrue(events.waitForConnections(1))
        events.connections[0].abort()
        XCTAssertEqual(peer.readEndErrno(), ECONNRESET)
        XCTAssertTrue(events.waitForClosures(1))
    }

    /// A peer that sends half a frame and then nothing ends with timedOut
    /// after readTimeout; a busy neighbour is not disturbed.
    func testSlowLorisTimesOutOthersAreServed() throws {
        let events = ServerEvents()
        let server = try recordingServer(events, echo: true, try TobyConfiguration(readTimeout: .milliseconds(300)))
        defer { server.close() }
        let loris = try connectRaw(port: server.port)
        loris.setReceiveTimeout(seconds: 10)
        loris.write(TobyProtocol.prefix(length: 100) + [1, 2, 3])
        let busy = try connectRaw(port: server.port)
        busy.setReceiveTimeout(seconds: 10)
        let start = monotonicNanoseconds()
        while monotonicNanoseconds() - start < 600_000_000 {
            busy.write(frame([9]))
            XCTAssertEqual(busy.readFrame(), [9])
        }
        XCTAssertTrue(events.waitForClosures(1))
        XCTAssertEqual(events.closed.first ?? nil, .timedOut(.milliseconds(300)))
        XCTAssertEqual(loris.readEndErrno(), 0, "the slow peer's connection was ended")
        busy.write(frame([8]))
        XCTAssertEqual(busy.readFrame(), [8], "the busy connection is still served")
    }

    /// Clients that send 1 MiB frames and never read: the server stops
    /// reading them at the high-water mark, so its memory stays bounded,
    /// and a fresh client's round trips go on.
    func testNonReadingClientsAreBoundedAndOthersKeepGoing() throws {
        let highWater = 1 << 20
        let server = try echoServer(options: .init(writeHighWaterMark: highWater, writeLowWaterMark: highWater / 4))
        defer { server.close() }
        let big = pattern(1 << 20, seed: 5)
        let hogs = (0..<4).map { _ in try! connectRaw(port: server.port) }
        let baseline = residentBytes()
        let stop = ServerEvents()
        let blocked = ServerEvents()  // one entry per hog the server stopped reading
        let exited = ServerEvents()  // one entry per writer thread that ended
        let writers = hogs.map { hog in
            Thread {
                defer { exited.close(nil) }
                var tv = timeval(tv_sec: 0, tv_usec: 100_000)
                setsockopt(hog.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let bytes = frame(big)
                var sawBlock = false
                while stop.closed.isEmpty {
                    var offset = 0
                    while offset < bytes.count && stop.closed.isEmpty {
                        let n = bytes[offset...].withUnsafeBytes { send(hog.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        if n > 0 {
                            offset += n
                        } else if errno == EAGAIN {
                            // 100 ms without room: the server has stopped reading us.
                            if !sawBlock { blocked.close(nil) }
                            sawBlock = true
                        } else if errno != EINTR {
                            return
                        }
                    }
                }
            }
        }
        writers.forEach { $0.start() }
        let fresh = try connectRaw(port: server.port)
        fresh.setReceiveTimeout(seconds: 10)
        var worst: UInt64 = 0
        var trips = 0
        let start = monotonicNanoseconds()
        while trips < 1000 || (blocked.closed.count < hogs.count && monotonicNanoseconds() - start < 20_000_000_000) {
            let t0 = monotonicNanoseconds()
            fresh.write(frame([UInt8(trips & 0xff)]))
            XCTAssertEqual(fresh.readFrame(), [UInt8(trips & 0xff)])
            worst = max(worst, monotonicNanoseconds() - t0)
            trips += 1
        }
        XCTAssertEqual(blocked.closed.count, hogs.count, "every hog was pushed back")
        let grown = residentBytes() - baseline
        stop.close(nil)
        for hog in hogs { shutdown(hog.fd, Int32(SHUT_RDWR)) }
        XCTAssertTrue(exited.waitForClosures(hogs.count), "the writers ended")
        hogs.forEach { $0.reset() }
        // Each hog costs at most: one frame being read + output to the
        // high-water mark + a frame's echo over it + the ring.
        let bound = 4 * (3 * (1 << 20) + highWater + (64 << 10)) + (16 << 20)
        if !underAddressSanitizer {
            XCTAssertLessThan(grown, bound, "server memory grew by \(grown) bytes")
        }
        XCTAssertLessThan(worst, 2_000_000_000, "a round trip took \(worst) ns")
    }

    /// A client that writes 32 MiB without reading, then reads it all: the
    /// loop pauses and resumes reading many times and loses nothing.
    func testBackPressurePausesAndResumesWithoutLoss() throws {
        let server = try echoServer(options: .init(writeHighWaterMark: 64 << 10, writeLowWaterMark: 16 << 10))
        defer { server.close() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        let payloads = (0..<512).map { pattern(64 << 10, seed: UInt64($0)) }
        let writer = Thread {
            try? client.send(contentsOf: payloads)
            try? client.close()
        }
        writer.start()
        var got = 0
        while let message = try receiver.receive() {
            XCTAssertEqual(message, payloads[got])
            got += 1
        }
        XCTAssertEqual(got, payloads.count)
    }

    /// A handler forwards each message to another connection (a broker):
    /// the frame goes out from the ring unchanged.
    func testForwardingToAnotherConnection() throws {
        let sink = ServerEvents()
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        struct Forward: TobyServerHandler {
            let sink: ServerEvents
            func connectionOpened(_ connection: TobyConnection) { sink.open(connection) }
            func received(_ messages: TobyMessages, on connection: TobyConnection) {
                guard let target = sink.connections.first, target !== connection else { return }
                try? target.send(contentsOf: messages)
            }
        }
        let server = try TobyServer.listen(port: 0, group: group) { _ in Forward(sink: sink) }
        defer { server.close() }
        let subscriber = try connectRaw(port: server.port)
        subscriber.setReceiveTimeout(seconds: 10)
        XCTAssertTrue(sink.waitForConnections(1))
        let publisher = try connectRaw(port: server.port)
        let payloads = (0..<100).map { pattern($0 * 13, seed: UInt64($0)) }
        publisher.write(payloads.flatMap { frame($0) })
        for payload in payloads { XCTAssertEqual(subscriber.readFrame(), payload) }
    }

    func testUnixSocketServerRemovesItsPath() throws {
        let path = "/tmp/toby-server-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let server = try TobyServer.listen(unixPath: path) { _ in EchoHandler() }
        XCTAssertEqual(server.address, "unix:\(path)")
        let client = try TobyMessenger.connect(unixPath: path)
        let receiver = try client.start()
        try client.send("toby is a good dog")
        XCTAssertEqual(try receiver.receive(), Array("toby is a good dog".utf8))
        server.close(gracePeriod: .zero)
        XCTAssertNil(try receiver.receive(), "close ends every connection gracefully")
        XCTAssertNotEqual(access(path, F_OK), 0, "the socket file is removed")
    }

    func testServerCloseEndsConnectionsAndStopsAccepting() throws {
        let server = try TobyServer.listen(port: 0) { _ in EchoHandler() }
        let port = server.port
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: port)
        let receiver = try client.start()
        try client.send([1])
        XCTAssertEqual(try receiver.receive(), [1])
        server.close(gracePeriod: .zero)
        XCTAssertNil(try receiver.receive())
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port))
    }

    /// A stopped group gives its descriptors back at once, though the group
    /// object (and closed connections holding its loops) still exist.
    func testShutdownReleasesTheLoopsDescriptors() throws {
        let before = openFileDescriptorCount()
        let group = try TobyEventLoopGroup(threads: 3)
        XCTAssertEqual(openFileDescriptorCount(), before + 6, "an epoll and an eventfd per loop")
        let server = try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        try client.send([1])
        XCTAssertEqual(try receiver.receive(), [1])
        server.close(gracePeriod: .zero)
        group.shutdown()
        try client.close()
        XCTAssertEqual(openFileDescriptorCount(), before + 1, "only the client messenger's socket remains")
        withExtendedLifetime((group, server)) {}
    }

    /// close() called by a handler, on a loop thread, cannot wait for the
    /// loops: it starts the same steps and returns; the loops finish them.
    func testCloseFromAHandlerOnTheLoop() throws {
        final class Holder: @unchecked Sendable {
            let lock = ConditionLock()
            var server: TobyServer?  // guarded by lock
        }
        struct Stopper: TobyServerHandler {
            let holder: Holder
            func received(_ messages: TobyMessages, on connection: TobyConnection) {
                try? connection.send(contentsOf: messages)
                holder.lock.withLock { holder.server }?.close(gracePeriod: .zero)
            }
        }
        let holder = Holder()
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        let server = try TobyServer.listen(port: 0, group: group) { _ in Stopper(holder: holder) }
        holder.lock.withLock { holder.server = server }
        let client = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
        let receiver = try client.start()
        try client.send([5])
        XCTAssertEqual(try receiver.receive(), [5], "the reply queued before the close still goes out")
        XCTAssertNil(try receiver.receive(), "then the connection ends")
        XCTAssertTrue(ServerEvents().wait { server.connectionCount == 0 })
        XCTAssertTrue(
            ServerEvents().wait { (try? TobyMessenger.connect(host: "127.0.0.1", port: server.port)) == nil },
            "the listener is closed")
    }

    func testInvalidOptionsAreRefused() {
        XCTAssertThrowsError(
            try TobyServer.listen(port: 0, options: .init(writeHighWaterMark: 10, writeLowWaterMark: 10)) { _ in
                EchoHandler()
            }
        ) { error in
            guard case .invalidConfiguration = error as? TobyError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try TobyEventLoopGroup(threads: 0))
    }
}

final class ServerMemoryTests: XCTestCase {
    /// Idle connections hold no ring and no output buffer: after each has
    /// exchanged a message, 2,000 of them cost well under 8 KiB resident each.
    func testIdleConnectionsAreSmall() throws {
        _ = raiseDescriptorLimit()
        let group = try TobyEventLoopGroup(threads: 2)
        defer { group.shutdown() }
        let server = try TobyServer.listen(port: 0, options: .init(backlog: 4096), group: group) { _ in EchoHandler() }
        defer { server.close() }
        // Warm the pools and the allocator first.
        var peers: [RawPeer] = []
        for _ in 0..<50 {
            let peer = try connectRaw(port: server.port)
            peer.setReceiveTimeout(seconds: 10)
            peer.write(frame(pattern(100, seed: 3)))
            XCTAssertEqual(peer.readFrame()?.count, 100)
            peers.append(peer)
        }
        let count = 2000
        peers.reserveCapacity(peers.count + count)
        let before = residentBytes()
        for _ in 0..<count {
            let peer = try connectRaw(port: server.port)
            peer.setReceiveTimeout(seconds: 10)
            peer.write(frame(pattern(100, seed: 3)))
            XCTAssertEqual(peer.readFrame()?.count, 100)
            peers.append(peer)
        }
        XCTAssertTrue(ServerEvents().wait { server.connectionCount == count + 50 })
        let perConnection = (residentBytes() - before) / count
        print("ServerMemoryTests: \(perConnection) bytes resident per idle connection")
        // Under ASan, freed memory waits in its quarantine and every block has
        // redzones (2.5 to 11 KiB measured there): the bound holds without it.
        if !underAddressSanitizer {
            XCTAssertLessThan(perConnection, 8 << 10, "\(perConnection) bytes resident per idle connection")
        }
    }
}

final class TimerHeapTests: XCTestCase {
    func testPopsInDeadlineOrderOnlyWhenDue() {
        var heap = TimerHeap()
        var rng = SplitMix64(state: 4)
        var deadlines: [UInt64] = []
        for token in 0..<500 {
            let deadline = rng.next() % 10_000
            deadlines.append(deadline)
            heap.push(deadline: deadline, token: UInt64(token))
        }
        XCTAssertEqual(heap.nextDeadline, deadlines.min())
        XCTAssertNil(heap.popDue(now: deadlines.min()! &- 1), "nothing is due before the earliest deadline")
        var popped: [UInt64] = []
        while let entry = heap.popDue(now: 5_000) {
            XCTAssertEqual(deadlines[Int(entry.token)], entry.deadline, "entry keeps its token")
            popped.append(entry.deadline)
        }
        XCTAssertEqual(popped, deadlines.filter { $0 <= 5_000 }.sorted())
        XCTAssertEqual(heap.count, deadlines.filter { $0 > 5_000 }.count)
        while heap.popDue(now: .max) != nil {}
        XCTAssertTrue(heap.isEmpty)
        XCTAssertEqual(heap.nextDeadline, .max)
    }
}

/// A server connection's large frame follows the bytes received, by the
/// same rule as the blocking receiver's (`LargeFrame`).
final class ServerLargeFrameMemoryTests: XCTestCase {
    /// A value handed from a loop to the test's thread.
    private final class Box<T>: @unchecked Sendable {
        let lock = ConditionLock()
        var value: T?  // guarded by lock
    }

    /// Runs `body` on `loop` and returns its result.
    private func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) -> T {
        let box = Box<T>()
        loop.enqueue(
            .run {
                box.lock.withLock {
                    box.value = body(); box.lock.broadcast()
                }
            })
        return box.lock.withLock {
            while box.value == nil { box.lock.wait() }
            return box.value!
        }
    }

    func testAnUnfinishedFrameCostsAtMostAQuarterMoreThanItsBytes() throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let events = ServerEvents()
        let server = try TobyServer.listen(port: 0, group: group) { _ in RecordingHandler(events: events) }
        defer { server.close(gracePeriod: .zero) }
        let peer = try connectRaw(port: server.port)
        XCTAssertTrue(events.waitForConnections(1))
        let connection = events.connections[0]
        let loop = group.loops[0]
        let length = 64 << 20
        peer.write(TobyProtocol.prefix(length: UInt64(length)) + [7])
        var sent = 1
        let payload = [UInt8](repeating: 7, count: 8 << 20)
        for chunk in [100, 10_000, 1_000_000, 8 << 20, 16 << 20] {
            var left = chunk
            while left > 0 {
                let piece = min(left, payload.count)
                peer.write(Array(payload[0..<piece]))
                left -= piece
            }
            sent += chunk
            XCTAssertTrue(
                ServerEvents().wait { self.onLoop(loop) { connection.largeFrameForTesting.filled } == sent },
                "the server read all \(sent) bytes")
            let (allocated, filled) = onLoop(loop) { connection.largeFrameForTesting }
            XCTAssertEqual(filled, sent)
            XCTAssertLessThanOrEqual(allocated, max(4096, filled + filled / 4), "after \(filled) of \(length) bytes")
        }
        XCTAssertTrue(events.received.isEmpty, "nothing delivered before the frame is whole")
    }
}
