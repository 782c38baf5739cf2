import CTobyFrame
import CTobyFrame.Testing
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ReaderTests: XCTestCase {
    /// Several frames including zero-length ones; fits a 64-byte ring.
    let smallFrames: [[UInt8]] = [
        Array("a".utf8), [], Array("hello world".utf8), payload(20, seed: 1), [], [], payload(3, seed: 2),
    ]

    private func read(
        _ chunks: [[UInt8]], capacity: Int = 64, maxFrame: UInt64 = 1 << 20,
        order: toby_byte_order = TOBY_LITTLE_ENDIAN, extra: [ScriptedIO.Recv] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) -> (DrainResult, ReaderBox) {
        let script = chunks.filter { !$0.isEmpty }.map { ScriptedIO.Recv.data($0) } + extra
        let box = ReaderBox(capacity: capacity, maxFrame: maxFrame, order: order, recv: script)
        let res = drain(box, file: file, line: line)
        XCTAssertFalse(box.io.badFD, file: file, line: line)
        XCTAssertFalse(box.io.zeroLengthIov, "recvmsg got a zero-length iovec", file: file, line: line)
        return (res, box)
    }

    // MARK: init

    func testInitValidatesArguments() {
        let io = ScriptedIO()
        let r = UnsafeMutablePointer<toby_reader>.allocate(capacity: 1)
        defer { r.deallocate() }
        var ring = [UInt8](repeating: 0, count: 4096)
        ring.withUnsafeMutableBufferPointer { b in
            for cap in [0, 1, 2, 8, 15, 17, 24, 48, 100, 1000] {
                XCTAssertEqual(
                    toby_reader_init(r, b.baseAddress, cap, 10, TOBY_LITTLE_ENDIAN, fakeFD, io.io),
                    TOBY_EINVAL, "capacity \(cap)")
            }
            for cap in [16, 32, 64, 4096] {
                XCTAssertEqual(toby_reader_init(r, b.baseAddress, cap, 10, TOBY_LITTLE_ENDIAN, fakeFD, io.io), 0)
                XCTAssertEqual(toby_reader_buffered(r), 0)
                XCTAssertEqual(toby_reader_direct_remaining(r), 0)
            }
            XCTAssertEqual(toby_reader_init(r, nil, 16, 10, TOBY_LITTLE_ENDIAN, fakeFD, io.io), TOBY_EINVAL)
            XCTAssertEqual(toby_reader_init(r, b.baseAddress, 16, 10, TOBY_LITTLE_ENDIAN, fakeFD, nil), TOBY_EINVAL)
            XCTAssertEqual(toby_reader_init(nil, b.baseAddress, 16, 10, TOBY_LITTLE_ENDIAN, fakeFD, io.io), TOBY_EINVAL)
            XCTAssertEqual(
                toby_reader_init(r, b.baseAddress, 16, 10, toby_byte_order(rawValue: 7), fakeFD, io.io),
                TOBY_EINVAL)
        }
    }

    // MARK: splitting

    func testStreamSplitAtEveryByteBoundary() {
        for order in bothOrders {
            let stream = referenceEncode(smallFrames, order)
            for cut in 0...stream.count {
                let (res, _) = read([Array(stream[..<cut]), Array(stream[cut...])], order: order)
                XCTAssertEqual(res.frames, smallFrames, "cut at \(cut)")
                XCTAssertEqual(res.status, statusEnd, "cut at \(cut)")
            }
        }
    }

    func testStreamSplitAtEveryPairOfBoundaries() {
        let stream = referenceEncode(smallFrames, TOBY_LITTLE_ENDIAN)
        for a in 0...stream.count {
            for b in a...stream.count {
                let chunks = [Array(stream[..<a]), Array(stream[a..<b]), Array(stream[b...])]
                let (res, _) = read(chunks, capacity: 32)
                XCTAssertEqual(res.frames, smallFrames, "cuts at \(a), \(b)")
                XCTAssertEqual(res.status, statusEnd)
            }
        }
    }

    func testByteAtATime() {
        for order in bothOrders {
            for capacity in [16, 32, 64] {
                let frames = smallFrames.filter { $0.count <= capacity - 8 }
                let stream = referenceEncode(frames, order)
                let (res, box) = read(stream.map { [$0] }, capacity: capacity, order: order)
                XCTAssertEqual(res.frames, frames, "capacity \(capacity)")
                XCTAssertEqual(res.status, statusEnd)
                // One recvmsg per byte plus the one that saw EOF.
                XCTAssertEqual(box.io.recvCalls, stream.count + 1)
            }
        }
    }

    func testManyFramesInOneRead() {
        let frames = (0..<200).map { payload($0 % 13, seed: $0) }
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        XCTAssertLessThan(stream.count, 4096)
        let (res, box) = read([stream], capacity: 4096)
        XCTAssertEqual(res.frames, frames)
        XCTAssertEqual(res.status, statusEnd)
        XCTAssertEqual(box.io.recvCalls, 2, "one read for all frames, one for EOF")
        XCTAssertEqual(res.fillResults, [stream.count, 0])
    }

    func testFramesWrapTheRing() {
        for capacity in [16, 32] {
            for order in bothOrders {
                var rng = TestRNG(seed: UInt64(capacity))
                let frames = (0..<300).map { payload(rng.below(capacity - 8 + 1), seed: $0) }
                let stream = referenceEncode(frames, order)
                var chunks = [[UInt8]]()
                var i = 0
                while i < stream.count {
                    let n = min(1 + rng.below(capacity), stream.count - i)
                    chunks.append(Array(stream[i..<(i + n)]))
                    i += n
                }
                let (res, box) = read(chunks, capacity: capacity, order: order)
                XCTAssertEqual(res.frames, frames)
                XCTAssertEqual(res.status, statusEnd)
                XCTAssertGreaterThan(res.wrappedFrames, 0, "some payloads must have wrapped")
                XCTAssertEqual(res.directFrames, 0)
                XCTAssertTrue(box.io.recvIovCounts.contains(2), "free space wrapped: two iovecs")
                XCTAssertTrue(box.io.recvIovCounts.allSatisfy { $0 == 1 || $0 == 2 })
            }
        }
    }

    func testFrameExactlyFillingTheRingIsNotDirect() {
        let frames = [payload(8, seed: 1), payload(8, seed: 2), [], payload(8, seed: 3)]
        let (res, _) = read([referenceEncode(frames, TOBY_LITTLE_ENDIAN)], capacity: 16)
        XCTAssertEqual(res.frames, frames)
        XCTAssertEqual(res.directFrames, 0)
        XCTAssertEqual(res.status, statusEnd)
    }

    func testPrefixWrappingTheRing() {
        // A 5-byte frame first (13 bytes), then frames whose prefix straddles the end of a 16-byte ring.
        let frames = [payload(5, seed: 1), payload(2, seed: 2), payload(7, seed: 3), []]
        for order in bothOrders {
            let stream = referenceEncode(frames, order)
            let chunks = [Array(stream[..<13]), Array(stream[13..<20]), Array(stream[20...])]
            let (res, _) = read(chunks, capacity: 16, order: order)
            XCTAssertEqual(res.frames, frames)
            XCTAssertEqual(res.status, statusEnd)
        }
    }

    // MARK: direct frames

    func testFrameLargerThanRingUsesDirect() {
        let big = payload(1000, seed: 9)
        let frames = [payload(5, seed: 1), big, payload(3, seed: 2), [], payload(10, seed: 3)]
        for order in bothOrders {
            let stream = referenceEncode(frames, order)
            // All of it offered at once: the fake fills dst then the ring.
            let (res, box) = read([stream], capacity: 32, order: order)
            XCTAssertEqual(res.frames, frames)
            XCTAssertEqual(res.status, statusEnd)
            XCTAssertEqual(res.directFrames, 1)
            XCTAssertGreaterThan(res.directCallsWithRingSpace, 0, "direct_fill offered the ring after dst")
            XCTAssertEqual(res.bufferedAfterDirect.count, 1)
            XCTAssertGreaterThan(res.bufferedAfterDirect[0], 0, "bytes after the big frame landed in the ring")
            XCTAssertTrue(box.io.recvIovCounts.contains { $0 >= 2 })
        }
    }

    func testDirectFillPutsFollowingFramesInRing() {
        // Drive by hand: after the direct payload completes, the next frame
        // must be decodable without another recvmsg.
        let big = payload(100, seed: 4)
        let after = payload(6, seed: 5)
        let stream = referenceEncode([big, after], TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 16, maxFrame: 1000, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<12])), .data(Array(stream[12...]))])
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(), 12)
        XCTAssertEqual(box.next(&f), statusDirect)
        XCTAssertEqual(f.length, 100)
        XCTAssertEqual(segmentBytes(f), Array(big[..<4]))
        XCTAssertEqual(box.next(&f), statusDirect, "next() again describes the same direct frame")
        XCTAssertEqual(f.length, 100)
        XCTAssertEqual(segmentBytes(f), Array(big[..<4]))
        var dst = [UInt8](repeating: 0, count: 100)
        dst.withUnsafeMutableBytes { d in
            XCTAssertEqual(toby_reader_direct_take(box.reader, d.baseAddress!, 100), 4)
            XCTAssertEqual(toby_reader_direct_remaining(box.reader), 96)
            XCTAssertEqual(box.buffered, 0)
            XCTAssertEqual(toby_reader_direct_fill(box.reader, d.baseAddress! + 4, 96, 0), 96)
        }
        XCTAssertEqual(dst, big)
        XCTAssertEqual(box.io.recvIovCounts.last, 3, "dst + the ring's free space, which wraps")
        XCTAssertEqual(toby_reader_direct_remaining(box.reader), 0)
        XCTAssertEqual(box.buffered, 14)
        let callsBefore = box.io.recvCalls
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), after)
        XCTAssertEqual(box.io.recvCalls, callsBefore)
        box.consume()
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(), 0)
        XCTAssertEqual(box.next(&f), statusEnd)
    }

    func testDirectFillWithPartialDestinationKeepsPayloadInOrder() {
        // dst smaller than the remaining payload: overflow payload bytes land
        // in the ring and must be taken before anything else.
        let big = payload(64, seed: 3)
        let stream = referenceEncode([big, [7]], TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<8])), .data(Array(stream[8...]))])
        var f = toby_frame()
        XCTAssertEqual(box.fill(), 8)
        XCTAssertEqual(box.next(&f), statusDirect)
        var got = [UInt8]()
        var tmp = [UInt8](repeating: 0, count: 10)
        while toby_reader_direct_remaining(box.reader) > 0 {
            let k = tmp.withUnsafeMutableBytes { toby_reader_direct_fill(box.reader, $0.baseAddress!, 10, 0) }
            XCTAssertGreaterThan(k, 0)
            if k <= 0 { return }
            got += tmp[..<k]
        }
        XCTAssertEqual(got, big)
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), [7])
    }

    func testDirectFillClampsToWhatIsOwed() {
        let big = payload(30, seed: 8)
        let stream = referenceEncode([big, [9]], TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<16])), .data(Array(stream[16...]))])
        var f = toby_frame()
        XCTAssertEqual(box.fill(), 16)
        XCTAssertEqual(box.next(&f), statusDirect)
        var dst = [UInt8](repeating: 0xC3, count: 100)
        dst.withUnsafeMutableBytes { d in
            XCTAssertEqual(toby_reader_direct_take(box.reader, d.baseAddress!, 100), 8, "take clamps too")
            XCTAssertEqual(toby_reader_direct_fill(box.reader, d.baseAddress! + 8, 92, 0), 22)
        }
        XCTAssertEqual(Array(dst[..<30]), big)
        XCTAssertEqual(Array(dst[30...]), [UInt8](repeating: 0xC3, count: 70), "nothing written past the payload")
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), [9])
    }

    func testDirectFramesSplitAtEveryByteBoundary() {
        let frames = [
            payload(3, seed: 1), payload(40, seed: 2), [], payload(8, seed: 3), payload(17, seed: 4),
            payload(9, seed: 5),
        ]
        for order in bothOrders {
            let stream = referenceEncode(frames, order)
            for cut in 0...stream.count {
                let (res, _) = read([Array(stream[..<cut]), Array(stream[cut...])], capacity: 16, order: order)
                XCTAssertEqual(res.frames, frames, "cut \(cut)")
                XCTAssertEqual(res.status, statusEnd, "cut \(cut)")
                XCTAssertEqual(res.directFrames, 3, "cut \(cut)")
            }
            let (res, _) = read(stream.map { [$0] }, capacity: 16, order: order)
            XCTAssertEqual(res.frames, frames)
            XCTAssertEqual(res.status, statusEnd)
        }
    }

    // MARK: max frame

    func testMaxFrameLimit() {
        for order in bothOrders {
            let ok = [payload(4, seed: 1), [], payload(100, seed: 2)]
            var stream = referenceEncode(ok, order)
            let badPrefix = referencePrefix(101, order)
            stream += badPrefix + payload(101, seed: 3) + referenceEncode([[1]], order)
            for capacity in [16, 256] {
                let (res, box) = read([stream], capacity: capacity, maxFrame: 100, order: order)
                XCTAssertEqual(res.frames, ok, "frames before the oversized one come first")
                XCTAssertEqual(res.status, TOBY_EFRAMETOOLARGE)
                XCTAssertEqual(res.failure.length, 101)
                XCTAssertEqual(prefixBytes(res.failure), badPrefix)
                // Sticky, with the same details.
                var f = toby_frame()
                for _ in 0..<3 {
                    XCTAssertEqual(box.next(&f), TOBY_EFRAMETOOLARGE)
                    XCTAssertEqual(f.length, 101)
                    XCTAssertEqual(prefixBytes(f), badPrefix)
                }
                XCTAssertEqual(box.fill(), Int(TOBY_EFRAMETOOLARGE))
            }
        }
    }

    func testMaxFrameCheckedAsSoonAsPrefixArrives() {
        // Only the prefix is available and the socket would block: the
        // verdict must not wait for the payload or for EOF.
        let hugePrefix = referencePrefix(UInt64.max, TOBY_BIG_ENDIAN)
        let box = ReaderBox(
            capacity: 16, maxFrame: 1 << 20, order: TOBY_BIG_ENDIAN,
            recv: [.data(Array(hugePrefix[..<3])), .data(Array(hugePrefix[3...])), .error(EAGAIN)])
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(), 3)
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(), 5)
        XCTAssertEqual(box.next(&f), TOBY_EFRAMETOOLARGE)
        XCTAssertEqual(f.length, UInt64.max)
        XCTAssertEqual(prefixBytes(f), hugePrefix)
    }

    func testMaxFrameZeroAcceptsOnlyEmptyFrames() {
        let stream = referenceEncode([[], [], [1]], TOBY_LITTLE_ENDIAN)
        let (res, _) = read([stream], capacity: 16, maxFrame: 0)
        XCTAssertEqual(res.frames, [[], []])
        XCTAssertEqual(res.outcome, .tooLarge(length: 1, prefix: referencePrefix(1, TOBY_LITTLE_ENDIAN)))
    }

    // MARK: EOF

    func testEOFAtEveryCutPointMatchesReference() {
        let frames = [payload(5, seed: 1), [], payload(30, seed: 2), payload(8, seed: 3), payload(1, seed: 4)]
        for order in bothOrders {
            let stream = referenceEncode(frames, order)
            for capacity in [16, 64] {
                for cut in 0...stream.count {
                    let cutStream = Array(stream[..<cut])
                    let want = referenceDecode(cutStream, order, maxFrame: 1000)
                    // Whole, two pieces, and byte at a time.
                    for chunks in [
                        [cutStream], [Array(cutStream.prefix(cut / 2)), Array(cutStream.dropFirst(cut / 2))],
                        cutStream.map { [$0] },
                    ] {
                        let (res, box) = read(chunks, capacity: capacity, maxFrame: 1000, order: order)
                        XCTAssertEqual(res.frames, want.frames, "cut \(cut) capacity \(capacity)")
                        XCTAssertEqual(res.outcome, want.outcome, "cut \(cut) capacity \(capacity)")
                        if res.status == TOBY_ETRUNCATED {
                            var f = toby_frame()
                            XCTAssertEqual(box.next(&f), TOBY_ETRUNCATED, "sticky")
                            XCTAssertEqual(f.expected, res.failure.expected)
                            XCTAssertEqual(f.received, res.failure.received)
                            XCTAssertEqual(box.fill(), Int(TOBY_ETRUNCATED))
                        }
                    }
                }
            }
        }
    }

    func testTruncationExamples() {
        // Mid-prefix: 3 of 8 prefix bytes.
        var stream = referenceEncode([Array("abc".utf8)], TOBY_LITTLE_ENDIAN) + [9, 0, 0]
        var (res, _) = read([stream], capacity: 32)
        XCTAssertEqual(res.frames, [Array("abc".utf8)])
        XCTAssertEqual(res.outcome, .truncated(expected: 8, received: 3))
        // Mid-payload: prefix + 4 of 9 payload bytes.
        stream = referenceEncode([Array("abc".utf8)], TOBY_LITTLE_ENDIAN) + referencePrefix(9, TOBY_LITTLE_ENDIAN) + [1, 2, 3, 4]
        (res, _) = read([stream], capacity: 32)
        XCTAssertEqual(res.frames, [Array("abc".utf8)])
        XCTAssertEqual(res.outcome, .truncated(expected: 17, received: 12))
        // Mid-payload of a direct frame: 8 + 20 of 8 + 50.
        stream = referencePrefix(50, TOBY_LITTLE_ENDIAN) + payload(20, seed: 1)
        (res, _) = read([stream], capacity: 16)
        XCTAssertEqual(res.directFrames, 1)
        XCTAssertEqual(res.outcome, .truncated(expected: 58, received: 28))
        XCTAssertEqual(res.directFillResults.last, Int(TOBY_ETRUNCATED))
        // Just a direct frame's prefix.
        (res, _) = read([referencePrefix(50, TOBY_LITTLE_ENDIAN)], capacity: 16)
        XCTAssertEqual(res.outcome, .truncated(expected: 58, received: 8))
        // At a boundary: clean end.
        (res, _) = read([referenceEncode([[1], []], TOBY_LITTLE_ENDIAN)], capacity: 16)
        XCTAssertEqual(res.outcome, .end)
        // Nothing at all.
        (res, _) = read([], capacity: 16)
        XCTAssertEqual(res.frames, [])
        XCTAssertEqual(res.outcome, .end)
    }

    func testEndIsRepeatable() {
        let (res, box) = read([referenceEncode([[1]], TOBY_LITTLE_ENDIAN)], capacity: 16)
        XCTAssertEqual(res.status, statusEnd)
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusEnd)
        XCTAssertEqual(box.fill(), 0)
        XCTAssertEqual(box.next(&f), statusEnd)
    }

    // MARK: EINTR / EAGAIN / errors

    func testEINTRIsRetriedTransparently() {
        let frames = [payload(5, seed: 1), payload(20, seed: 2), payload(70, seed: 3)]
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        var script = [ScriptedIO.Recv]()
        for b in stream {
            script += [.error(EINTR), .error(EINTR), .data([b])]
        }
        script += [.error(EINTR), .eof]
        let box = ReaderBox(capacity: 32, maxFrame: 100, order: TOBY_LITTLE_ENDIAN, recv: script)
        let res = drain(box)
        XCTAssertEqual(res.frames, frames)
        XCTAssertEqual(res.status, statusEnd)
        XCTAssertFalse(res.fillResults.contains(-Int(EINTR)))
        XCTAssertFalse(res.directFillResults.contains(-Int(EINTR)))
        XCTAssertEqual(box.io.recvCalls, 3 * stream.count + 2)
    }

    func testEAGAINIsReturnedAndNotSticky() {
        let frames = [payload(5, seed: 1), payload(9, seed: 2)]
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 32, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [
                .error(EAGAIN), .data(Array(stream[..<10])), .error(EAGAIN), .error(EWOULDBLOCK),
                .data(Array(stream[10...])),
            ])
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(msgDontWait), -Int(EAGAIN))
        XCTAssertEqual(box.next(&f), statusNeedMore, "EAGAIN is not sticky")
        XCTAssertEqual(box.fill(msgDontWait), 10)
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(msgDontWait), -Int(EAGAIN))
        XCTAssertEqual(box.fill(msgDontWait), -Int(EWOULDBLOCK))
        XCTAssertEqual(box.next(&f), statusNeedMore)
        XCTAssertEqual(box.fill(msgDontWait), stream.count - 10)
        let res = drain(box)
        XCTAssertEqual(res.frames, frames)
        XCTAssertEqual(res.status, statusEnd)
        XCTAssertEqual(box.io.recvFlags.prefix(5).map { $0 & msgDontWait }, Array(repeating: msgDontWait, count: 5))
    }

    func testEAGAINInDirectFillIsResumable() {
        let big = payload(50, seed: 1)
        let stream = referenceEncode([big, [3]], TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<20])), .error(EAGAIN), .error(EINTR), .data(Array(stream[20...]))])
        var f = toby_frame()
        XCTAssertEqual(box.fill(), 16, "the ring holds 16")
        XCTAssertEqual(box.next(&f), statusDirect)
        var dst = [UInt8](repeating: 0, count: 50)
        dst.withUnsafeMutableBytes { d in
            XCTAssertEqual(toby_reader_direct_take(box.reader, d.baseAddress!, 50), 8)
            XCTAssertEqual(toby_reader_direct_fill(box.reader, d.baseAddress! + 8, 42, msgDontWait), 4)
            XCTAssertEqual(toby_reader_direct_fill(box.reader, d.baseAddress! + 12, 38, msgDontWait), -Int(EAGAIN))
            XCTAssertEqual(toby_reader_direct_remaining(box.reader), 38)
            XCTAssertEqual(toby_reader_direct_fill(box.reader, d.baseAddress! + 12, 38, msgDontWait), 38)
        }
        XCTAssertEqual(dst, big)
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), [3])
    }

    func testDirectFillRejectsBadArguments() {
        let box = ReaderBox(capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN, recv: [])
        var b: UInt8 = 0
        XCTAssertEqual(toby_reader_direct_fill(box.reader, &b, 1, 0), Int(TOBY_EINVAL), "no direct frame")
        XCTAssertEqual(toby_reader_direct_take(box.reader, &b, 1), 0)
    }

    func testIOErrorReportedAfterBufferedFrames() {
        let frames = [payload(5, seed: 1), [], payload(9, seed: 2)]
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN) + referencePrefix(4, TOBY_LITTLE_ENDIAN) + [1, 2]
        let box = ReaderBox(
            capacity: 64, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(stream), .error(ECONNRESET), .data([1, 2, 3])])
        XCTAssertEqual(box.fill(), stream.count)
        XCTAssertEqual(box.fill(), -Int(ECONNRESET), "the error arrives before any frame is taken")
        var f = toby_frame()
        var got = [[UInt8]]()
        for _ in 0..<3 {
            XCTAssertEqual(box.next(&f), statusFrame)
            got.append(segmentBytes(f))
            box.consume()
        }
        XCTAssertEqual(got, frames)
        XCTAssertEqual(box.next(&f), -ECONNRESET)
        XCTAssertEqual(box.next(&f), -ECONNRESET, "sticky")
        XCTAssertEqual(box.fill(), -Int(ECONNRESET), "sticky: no further recvmsg")
        XCTAssertEqual(box.io.recvCalls, 2)
    }

    func testIOErrorDuringDirectFrame() {
        let stream = referencePrefix(40, TOBY_LITTLE_ENDIAN) + payload(10, seed: 1)
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(stream), .error(ECONNRESET)])
        let res = drain(box)
        XCTAssertEqual(res.frames, [])
        XCTAssertEqual(res.status, -ECONNRESET)
        XCTAssertEqual(res.directFillResults.last, -Int(ECONNRESET))
    }

    func testFullRingReturnsENOBUFSNotSticky() {
        let frames = [payload(8, seed: 1), payload(3, seed: 2)]
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN, recv: [.data(stream)])
        XCTAssertEqual(box.fill(), 16)
        XCTAssertEqual(box.fill(), -Int(ENOBUFS))
        XCTAssertEqual(box.io.recvCalls, 1, "no recvmsg with a full ring")
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), frames[0])
        XCTAssertEqual(box.fill(), -Int(ENOBUFS), "not consumed yet")
        box.consume()
        XCTAssertEqual(box.fill(), 11)
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), frames[1])
    }

    func testNextTwiceReturnsSameFrameAndFillKeepsIt() {
        let frames = [payload(6, seed: 1), payload(6, seed: 2)]
        let stream = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: 32, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<16])), .data(Array(stream[16...]))])
        var f = toby_frame()
        XCTAssertEqual(box.fill(), 16)
        XCTAssertEqual(box.next(&f), statusFrame)
        let p0 = f.data.0
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(f.data.0, p0)
        XCTAssertEqual(box.fill(), 12, "fill while the frame is held")
        XCTAssertEqual(segmentBytes(f), frames[0], "fills do not touch the held frame")
        box.consume()
        XCTAssertEqual(box.next(&f), statusFrame)
        XCTAssertEqual(segmentBytes(f), frames[1])
        box.consume()
        box.consume()  // a second consume is a no-op
        XCTAssertEqual(box.buffered, 0)
    }

    // MARK: next() twice agrees on a direct frame (a bug the fuzzer found, fixed in a225402)

    /// The peer closes right after the prefix of a frame too big for the ring.
    /// "Calling next() again before consume() returns the same frame", and a
    /// stream that ended mid-frame is TOBY_ETRUNCATED (as it is for frames
    /// that fit the ring). The first next() used to return TOBY_FRAME_DIRECT
    /// (the new-direct-frame path did not look at eof), the second
    /// TOBY_ETRUNCATED.
    func testNextTwiceAgreesOnDirectFrameAfterEOF() {
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(referencePrefix(40, TOBY_LITTLE_ENDIAN)), .eof])
        XCTAssertEqual(box.fill(), 8)
        XCTAssertEqual(box.fill(), 0, "EOF seen before the prefix is decoded")
        var f1 = toby_frame()
        var f2 = toby_frame()
        let first = box.next(&f1)
        let second = box.next(&f2)
        XCTAssertEqual(first, second, "next() twice must agree")
        XCTAssertEqual(first, TOBY_ETRUNCATED)
        XCTAssertEqual(f1.expected, 48)
        XCTAssertEqual(f1.received, 8)
        XCTAssertEqual(second, TOBY_ETRUNCATED)
        XCTAssertEqual(f2.expected, 48)
        XCTAssertEqual(f2.received, 8)
    }

    /// Same with a pending I/O error instead of EOF.
    func testNextTwiceAgreesOnDirectFrameAfterIOError() {
        let box = ReaderBox(
            capacity: 16, maxFrame: 100, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(referencePrefix(40, TOBY_LITTLE_ENDIAN)), .error(ECONNRESET)])
        XCTAssertEqual(box.fill(), 8)
        XCTAssertEqual(box.fill(), -Int(ECONNRESET))
        var f = toby_frame()
        let first = box.next(&f)
        let second = box.next(&f)
        XCTAssertEqual(first, second, "next() twice must agree")
        XCTAssertEqual(first, -ECONNRESET)
    }
}

final class DirectReadaheadTests: XCTestCase {
    /// A direct fill reads at most TOBY_DIRECT_READAHEAD bytes past the
    /// frame into the ring: a following large frame goes mostly straight to
    /// its own destination instead of through the ring.
    func testDirectFillReadsOnlyALittleAhead() {
        let capacity = 64 * 1024
        let big = payload(100_000, seed: 1)
        let next = payload(100_000, seed: 2)
        let stream = referenceEncode([big, next], TOBY_LITTLE_ENDIAN)
        let box = ReaderBox(
            capacity: capacity, maxFrame: 1 << 20, order: TOBY_LITTLE_ENDIAN,
            recv: [.data(Array(stream[..<8])), .data(Array(stream[8...]))])
        XCTAssertEqual(box.fill(), 8)
        var f = toby_frame()
        XCTAssertEqual(box.next(&f), Int32(TOBY_FRAME_DIRECT))
        var dst = [UInt8](repeating: 0, count: big.count)
        var got = 0
        while got < big.count {
            let n = dst.withUnsafeMutableBytes { toby_reader_direct_fill(box.reader, $0.baseAddress! + got, big.count - got, 0) }
            XCTAssertGreaterThan(n, 0)
            got += n
        }
        XCTAssertEqual(dst, big)
        XCTAssertEqual(box.buffered, Int(TOBY_DIRECT_READAHEAD), "read ahead is capped")
        // The rest of the stream still decodes: the next frame is direct too.
        XCTAssertEqual(box.next(&f), Int32(TOBY_FRAME_DIRECT))
        XCTAssertEqual(f.length, UInt64(next.count))
        XCTAssertEqual(f.len.0 + f.len.1, Int(TOBY_DIRECT_READAHEAD) - 8)
    }
}
