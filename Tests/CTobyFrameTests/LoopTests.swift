// The event-loop mechanism (toby_loop_*) through a fake toby_loop_io, and
// on a real epoll where the kernel's behaviour is the point (descriptor
// reuse, interest changes, wake-ups from another thread). Also the ring
// swapping and raw gather writes an event loop relies on.
import CTobyFrame
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A scripted epoll: records every call, answers waits from a script.
final class FakeLoopIO {
    struct Control: Equatable {
        let op: Int32
        let fd: Int32
        let interest: UInt32
        let token: UInt64
    }

    enum Wait {
        case events([(UInt64, UInt32)])
        case error(Int32)  // positive errno, returned negated
    }

    var createResult: Int32 = 100
    var wakeResult: Int32 = 101
    var controlResult: Int32 = 0
    var waits: [Wait] = []
    var signalResults: [Int32] = []
    private(set) var controls: [Control] = []
    private(set) var closed: [Int32] = []
    private(set) var drains = 0
    private(set) var signals = 0
    private(set) var waitTimeouts: [Int32] = []
    private(set) var waitCapacities: [Int32] = []

    let table: UnsafeMutablePointer<toby_loop_io>

    init() {
        table = .allocate(capacity: 1)
        table.initialize(
            to: toby_loop_io(
                create: { ctx in FakeLoopIO.of(ctx).createResult },
                create_wake: { ctx in FakeLoopIO.of(ctx).wakeResult },
                control: { ctx, _, op, fd, interest, token in
                    let fake = FakeLoopIO.of(ctx)
                    fake.controls.append(Control(op: op, fd: fd, interest: interest, token: token))
                    return fake.controlResult
                },
                wait: { ctx, _, events, capacity, timeout in
                    let fake = FakeLoopIO.of(ctx)
                    fake.waitTimeouts.append(timeout)
                    fake.waitCapacities.append(capacity)
                    guard !fake.waits.isEmpty else { return 0 }
                    switch fake.waits.removeFirst() {
                    case .error(let e): return -e
                    case .events(let list):
                        for (i, (token, bits)) in list.prefix(Int(capacity)).enumerated() {
                            events![i] = toby_loop_event(token: token, events: bits)
                        }
                        return Int32(min(list.count, Int(capacity)))
                    }
                },
                signal: { ctx, _ in
                    let fake = FakeLoopIO.of(ctx)
                    fake.signals += 1
                    return fake.signalResults.isEmpty ? 0 : fake.signalResults.removeFirst()
                },
                drain: { ctx, _ in
                    FakeLoopIO.of(ctx).drains += 1
                    return 0
                },
                close: { ctx, fd in
                    FakeLoopIO.of(ctx).closed.append(fd)
                    return 0
                },
                ctx: nil))
        table.pointee.ctx = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { table.deallocate() }

    static func of(_ ctx: UnsafeMutableRawPointer?) -> FakeLoopIO {
        Unmanaged<FakeLoopIO>.fromOpaque(ctx!).takeUnretainedValue()
    }
}

let loopRead = UInt32(TOBY_LOOP_READ)
let loopWrite = UInt32(TOBY_LOOP_WRITE)
let loopHangup = UInt32(TOBY_LOOP_HANGUP)
let loopExclusive = UInt32(TOBY_LOOP_EXCLUSIVE)

final class LoopMechanismTests: XCTestCase {
    func testOpenRegistersTheWakeUpUnderItsReservedToken() {
        let fake = FakeLoopIO()
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, fake.table), 0)
        XCTAssertEqual(fake.controls, [.init(op: 0, fd: 101, interest: loopRead, token: UInt64.max)])
        toby_loop_close(&loop)
        XCTAssertEqual(fake.closed.sorted(), [100, 101])
    }

    func testOpenFailuresLeaveNothingOpen() {
        let noEpoll = FakeLoopIO()
        noEpoll.createResult = -EMFILE
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, noEpoll.table), -EMFILE)
        XCTAssertEqual(noEpoll.closed, [])

        let noEventfd = FakeLoopIO()
        noEventfd.wakeResult = -EMFILE
        XCTAssertEqual(toby_loop_open(&loop, noEventfd.table), -EMFILE)
        XCTAssertEqual(noEventfd.closed, [100], "the epoll descriptor is closed again")

        let noControl = FakeLoopIO()
        noControl.controlResult = -ENOMEM
        XCTAssertEqual(toby_loop_open(&loop, noControl.table), -ENOMEM)
        XCTAssertEqual(noControl.closed.sorted(), [100, 101])
        XCTAssertEqual(toby_loop_open(nil, noControl.table), TOBY_EINVAL)
    }

    func testInterestChangesCarryTheirTokens() {
        let fake = FakeLoopIO()
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, fake.table), 0)
        defer { toby_loop_close(&loop) }
        XCTAssertEqual(toby_loop_add(&loop, 7, 0x1_0000_0003, loopRead), 0)
        XCTAssertEqual(toby_loop_modify(&loop, 7, 0x1_0000_0003, loopRead | loopWrite), 0)
        XCTAssertEqual(toby_loop_modify(&loop, 7, 0x1_0000_0003, 0), 0)
        XCTAssertEqual(toby_loop_remove(&loop, 7), 0)
        XCTAssertEqual(toby_loop_add(&loop, 8, 5, loopRead | loopExclusive), 0)
        XCTAssertEqual(
            Array(fake.controls.dropFirst()),
            [
                .init(op: 0, fd: 7, interest: loopRead, token: 0x1_0000_0003),
                .init(op: 1, fd: 7, interest: loopRead | loopWrite, token: 0x1_0000_0003),
                .init(op: 1, fd: 7, interest: 0, token: 0x1_0000_0003),
                .init(op: 2, fd: 7, interest: 0, token: 0),
                .init(op: 0, fd: 8, interest: loopRead | loopExclusive, token: 5),
            ])
        XCTAssertEqual(toby_loop_add(&loop, 9, UInt64.max, loopRead), TOBY_EINVAL, "the wake-up's token is reserved")
        XCTAssertEqual(toby_loop_modify(&loop, 9, UInt64.max, loopRead), TOBY_EINVAL)
        XCTAssertEqual(
            toby_loop_modify(&loop, 8, 5, loopRead | loopExclusive), TOBY_EINVAL,
            "an exclusive registration cannot be modified")
        fake.controlResult = -EEXIST
        XCTAssertEqual(toby_loop_add(&loop, 7, 1, loopRead), -EEXIST, "errors are passed on")
    }

    func testWaitDrainsTheWakeUpAndKeepsEventOrder() {
        let fake = FakeLoopIO()
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, fake.table), 0)
        defer { toby_loop_close(&loop) }
        fake.waits = [
            .events([(UInt64(1), loopRead), (UInt64.max, loopRead), (UInt64(2), loopWrite), (UInt64(3), loopRead | loopHangup)]),
            .events([(UInt64.max, loopRead)] as [(UInt64, UInt32)]),
            .error(EINTR),
            .error(EBADF),
        ]
        var events = [toby_loop_event](repeating: toby_loop_event(), count: 8)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 25), 3)
        XCTAssertEqual(events[0].token, 1)
        XCTAssertEqual(events[1].token, 2)
        XCTAssertEqual(events[1].events, loopWrite)
        XCTAssertEqual(events[2].token, 3)
        XCTAssertEqual(events[2].events, loopRead | loopHangup)
        XCTAssertEqual(fake.drains, 1)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, -1), 0, "a wake-up alone reports no event")
        XCTAssertEqual(fake.drains, 2)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 10), 0, "EINTR is a return, not an error")
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 10), -EBADF)
        XCTAssertEqual(fake.waitTimeouts, [25, -1, 10, 10], "the caller's timeout is passed through")
        XCTAssertEqual(toby_loop_wait(&loop, &events, 0, 10), TOBY_EINVAL)
        var many = [toby_loop_event](repeating: toby_loop_event(), count: 1000)
        _ = toby_loop_wait(&loop, &many, 1000, 0)
        XCTAssertEqual(fake.waitCapacities.last, Int32(TOBY_LOOP_MAX_EVENTS), "capacity is clamped")
    }

    func testWakeRetriesEINTRAndTreatsASaturatedCounterAsDone() {
        let fake = FakeLoopIO()
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, fake.table), 0)
        defer { toby_loop_close(&loop) }
        fake.signalResults = [-EINTR, -EINTR, 0]
        XCTAssertEqual(toby_loop_wake(&loop), 0)
        XCTAssertEqual(fake.signals, 3)
        fake.signalResults = [-EAGAIN]
        XCTAssertEqual(toby_loop_wake(&loop), 0)
        fake.signalResults = [-EBADF]
        XCTAssertEqual(toby_loop_wake(&loop), -EBADF)
    }

    func testTimeoutRoundsUpSoTimersNeverFireEarly() {
        XCTAssertEqual(toby_loop_timeout_ms(1000, UInt64.max), -1)
        XCTAssertEqual(toby_loop_timeout_ms(1000, 1000), 0)
        XCTAssertEqual(toby_loop_timeout_ms(1000, 10), 0, "a deadline passed")
        XCTAssertEqual(toby_loop_timeout_ms(0, 1), 1, "1 ns rounds up to 1 ms")
        XCTAssertEqual(toby_loop_timeout_ms(0, 1_000_000), 1)
        XCTAssertEqual(toby_loop_timeout_ms(0, 1_000_001), 2)
        XCTAssertEqual(toby_loop_timeout_ms(5, 5 + 250_000_000), 250)
        XCTAssertEqual(toby_loop_timeout_ms(0, UInt64.max - 1), Int32.max, "clamped")
    }

    // MARK: Real epoll

    private func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        return (fds[0], fds[1])
    }

    /// A descriptor number reused after close is reported with its new
    /// token only: the old registration died with the old descriptor.
    func testTokenFollowsTheRegistrationNotTheDescriptorNumber() {
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, toby_loop_io_system()), 0)
        defer { toby_loop_close(&loop) }
        let (a, aPeer) = socketPair()
        XCTAssertEqual(toby_loop_add(&loop, a, 1, loopRead), 0)
        _ = "x".withCString { write(aPeer, $0, 1) }
        close(a)
        close(aPeer)
        let (b, bPeer) = socketPair()
        defer { close(b); close(bPeer) }
        XCTAssertEqual(b, a, "the kernel reused the number (lowest free descriptor)")
        XCTAssertEqual(toby_loop_add(&loop, b, 2, loopRead), 0, "no stale registration is in the way")
        _ = "y".withCString { write(bPeer, $0, 1) }
        var events = [toby_loop_event](repeating: toby_loop_event(), count: 8)
        let n = toby_loop_wait(&loop, &events, 8, 1000)
        XCTAssertEqual(n, 1)
        XCTAssertEqual(events[0].token, 2)
        XCTAssertEqual(events[0].events & loopRead, loopRead)
    }

    func testInterestChangesOnARealSocket() {
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, toby_loop_io_system()), 0)
        defer { toby_loop_close(&loop) }
        let (a, peer) = socketPair()
        defer { close(a); close(peer) }
        var events = [toby_loop_event](repeating: toby_loop_event(), count: 8)
        XCTAssertEqual(toby_loop_add(&loop, a, 9, loopWrite), 0)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 1000), 1)
        XCTAssertEqual(events[0].events, loopWrite, "an empty socket is writable")
        XCTAssertEqual(toby_loop_modify(&loop, a, 9, loopRead), 0)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 0), 0, "not readable, no write interest")
        _ = "z".withCString { write(peer, $0, 1) }
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 1000), 1)
        XCTAssertEqual(events[0].events & loopRead, loopRead)
        XCTAssertEqual(toby_loop_modify(&loop, a, 9, 0), 0)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 0), 0, "interest 0 silences readability")
        shutdown(peer, Int32(SHUT_RDWR))
        XCTAssertEqual(toby_loop_modify(&loop, a, 9, loopRead), 0)
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 1000), 1)
        XCTAssertEqual(events[0].events & loopHangup, loopHangup, "the peer's close is a hang-up")
    }

    func testWakeFromAnotherThreadEndsAWait() {
        var loop = toby_loop()
        XCTAssertEqual(toby_loop_open(&loop, toby_loop_io_system()), 0)
        defer { toby_loop_close(&loop) }
        let wakeFD = loop.wake_fd
        // Exactly what toby_loop_wake does from another thread: only the
        // eventfd is touched, so only its number crosses threads.
        let waker = Thread {
            var table = toby_loop()
            table.io = toby_loop_io_system()
            table.wake_fd = wakeFD
            _ = toby_loop_wake(&table)
        }
        var events = [toby_loop_event](repeating: toby_loop_event(), count: 8)
        let start = Date()
        waker.start()
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 10_000), 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "woken, not timed out")
        XCTAssertEqual(toby_loop_wait(&loop, &events, 8, 0), 0, "the wake-up was drained")
    }

    // MARK: Ring swapping and raw writes

    func testRingSwapOnlyWhileNothingIsBuffered() {
        let box = ReaderBox(
            capacity: 64, maxFrame: 1000, order: littleEndian,
            recv: [.data(referenceEncode([[1, 2, 3]], littleEndian) + [9])])
        let other = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
        defer { other.deallocate() }
        XCTAssertEqual(toby_reader_set_ring(box.reader, nil, 0), 0, "nothing buffered: detach")
        XCTAssertEqual(box.fill(), -Int(ENOBUFS), "a detached reader cannot fill (not sticky)")
        XCTAssertEqual(toby_reader_set_ring(box.reader, other, 32), 0)
        XCTAssertEqual(box.fill(), 12)
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(toby_reader_set_ring(box.reader, nil, 0), TOBY_EINVAL, "a frame awaits consume")
        box.consume()
        XCTAssertEqual(toby_reader_set_ring(box.reader, nil, 0), TOBY_EINVAL, "a partial prefix is buffered")
        XCTAssertEqual(toby_reader_set_ring(box.reader, other, 24), TOBY_EINVAL)
        XCTAssertEqual(toby_reader_set_ring(box.reader, nil, 16), TOBY_EINVAL)
    }
}

/// toby_reader_take, the event loop's batch fast path, against the
/// reference decoder and against next() alone, on random streams.
final class ReaderTakeTests: XCTestCase {
    func testTakeAgreesWithTheReferenceOnRandomStreams() {
        var rng = SplitMix64(state: 77)
        for round in 0..<400 {
            let order = bothOrders[Int(rng.next() % 2)]
            let capacity = [16, 32, 64, 256][Int(rng.next() % 4)]
            let maxFrame: UInt64 = rng.next() % 5 == 0 ? 40 : 1000
            var frames: [[UInt8]] = []
            for _ in 0..<Int(rng.next() % 30) {
                let size = rng.next() % 6 == 0 ? Int(rng.next() % 300) : Int(rng.next() % 20)
                frames.append((0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            }
            var stream = referenceEncode(frames, order)
            if rng.next() % 3 == 0 { stream = Array(stream.dropLast(Int(rng.next() % 9))) }  // cut: truncation
            var chunks: [[UInt8]] = []
            var rest = stream[...]
            while !rest.isEmpty {
                let n = min(rest.count, 1 + Int(rng.next() % 90))
                chunks.append(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            let want = referenceDecode(stream, order, maxFrame: maxFrame)
            for take in [1, 3, 1000] {
                let box = ReaderBox(capacity: capacity, maxFrame: maxFrame, order: order, recv: chunks.map { .data($0) })
                let res = drain(box, take: take)
                XCTAssertEqual(res.frames, want.frames, "round \(round) take \(take) capacity \(capacity)")
                XCTAssertEqual(res.outcome, want.outcome, "round \(round) take \(take) capacity \(capacity)")
            }
        }
    }

    func testTakeStopsAtWrapsAndLeavesThemToNext() {
        // 16-byte ring: a 9-byte frame, then one whose prefix wraps.
        let stream = referenceEncode([[1], [2, 3, 4, 5]], littleEndian)
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: littleEndian, recv: [.data(Array(stream[0..<9])), .data(Array(stream[9...]))])
        XCTAssertEqual(box.fill(), 9)
        var spans = [toby_span](repeating: toby_span(), count: 4)
        XCTAssertEqual(spans.withUnsafeMutableBufferPointer { toby_reader_take(box.reader, $0.baseAddress, 4) }, 1)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: spans[0].data, count: spans[0].len)), [1])
        XCTAssertEqual(box.fill(), 12, "the rest, around the ring's end")
        XCTAssertEqual(
            spans.withUnsafeMutableBufferPointer { toby_reader_take(box.reader, $0.baseAddress, 4) }, 0,
            "the second frame's prefix wraps: left to next()")
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), [2, 3, 4, 5])
        XCTAssertEqual(UnsafeRawPointer(f.data.0), UnsafeRawPointer(box.ring + 1), "its payload starts after the wrapped prefix")
    }
}

/// Deterministic pseudo-random numbers for the randomized tests.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
