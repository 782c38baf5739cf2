import CTobyFrame
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class WriterTests: XCTestCase {
    let frames: [[UInt8]] = [
        payload(5, seed: 1), [], payload(13, seed: 2), [], [], payload(1, seed: 3),
        payload(40, seed: 4),
    ]

    /// Writes everything, resuming after every -EAGAIN; returns the results.
    @discardableResult
    private func writeAll(
        _ w: WriterBox, _ out: OutFrames, flags: Int32 = 0, maxCalls: Int = 100_000,
        file: StaticString = #filePath, line: UInt = #line
    ) -> [Int32] {
        var index = 0
        var offset: UInt64 = 0
        var results = [Int32]()
        for _ in 0..<maxCalls {
            let rc = w.write(out, index: &index, offset: &offset, flags: flags)
            results.append(rc)
            if rc == 0 {
                XCTAssertEqual(index, out.outs.count, file: file, line: line)
                XCTAssertEqual(offset, 0, file: file, line: line)
                return results
            }
            if rc != -EAGAIN {
                XCTFail("unexpected \(rc)", file: file, line: line)
                return results
            }
        }
        XCTFail("no progress", file: file, line: line)
        return results
    }

    private func checkCommon(_ w: WriterBox, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(w.io.badFD, file: file, line: line)
        XCTAssertTrue(
            w.io.sendFlags.allSatisfy { $0 & msgNoSignal != 0 }, "MSG_NOSIGNAL on every sendmsg",
            file: file, line: line)
        XCTAssertLessThanOrEqual(w.io.sendIovCounts.max() ?? 0, Int(TOBY_WRITER_IOV), file: file, line: line)
        XCTAssertFalse(w.io.sendIovCounts.contains(0), "sendmsg without vectors", file: file, line: line)
    }

    func testInitValidatesArguments() {
        let io = ScriptedIO()
        let w = UnsafeMutablePointer<toby_writer>.allocate(capacity: 1)
        defer { w.deallocate() }
        XCTAssertEqual(toby_writer_init(w, TOBY_LITTLE_ENDIAN, fakeFD, nil), TOBY_EINVAL)
        XCTAssertEqual(toby_writer_init(nil, TOBY_LITTLE_ENDIAN, fakeFD, io.io), TOBY_EINVAL)
        XCTAssertEqual(toby_writer_init(w, toby_byte_order(rawValue: 2), fakeFD, io.io), TOBY_EINVAL)
        XCTAssertEqual(toby_writer_init(w, TOBY_BIG_ENDIAN, fakeFD, io.io), 0)
    }

    func testWholeWriteInOneCall() {
        for order in bothOrders {
            let out = OutFrames(frames)
            let w = WriterBox(order: order)
            XCTAssertEqual(writeAll(w, out), [0])
            XCTAssertEqual(w.io.written, referenceEncode(frames, order))
            XCTAssertEqual(w.io.sendCalls, 1)
            // All 7 frames are small: staged together into one vector.
            XCTAssertEqual(w.io.sendIovCounts, [1])
            XCTAssertFalse(w.io.zeroLengthIov, "empty payloads get no vector")
            checkCommon(w)
        }
    }

    func testNothingToWrite() {
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.write(OutFrames([]), index: &index, offset: &offset), 0)
        XCTAssertEqual(w.io.sendCalls, 0)
        let out = OutFrames(frames)
        index = out.outs.count
        XCTAssertEqual(w.write(out, index: &index, offset: &offset), 0)
        XCTAssertEqual(w.io.sendCalls, 0)
    }

    /// The sendmsg accepts exactly n bytes per call, for every n.
    func testShortWritesOfEverySize() {
        for order in bothOrders {
            let want = referenceEncode(frames, order)
            for n in 1...(want.count + 1) {
                let out = OutFrames(frames, nullEmpty: n % 2 == 0)
                let w = WriterBox(order: order)
                w.io.defaultAccept = n
                XCTAssertEqual(writeAll(w, out), [0], "one call resumes internally (n = \(n))")
                XCTAssertEqual(w.io.written, want, "n = \(n)")
                XCTAssertEqual(w.io.sendCalls, (want.count + n - 1) / n, "n = \(n)")
                checkCommon(w)
            }
        }
    }

    /// A short write at every byte, then -EAGAIN: progress is exact and resumable.
    func testEAGAINAfterEveryPrefixKeepsExactProgress() {
        let want = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        // Where byte k of the stream lies: (frame index, offset into frame).
        var position = [(Int, UInt64)]()
        for (i, f) in frames.enumerated() {
            for o in 0..<(8 + f.count) { position.append((i, UInt64(o))) }
        }
        position.append((frames.count, 0))
        for k in 1..<want.count {
            let out = OutFrames(frames)
            let w = WriterBox(order: TOBY_LITTLE_ENDIAN, send: [.accept(k), .error(EAGAIN)])
            var index = 0
            var offset: UInt64 = 0
            XCTAssertEqual(w.write(out, index: &index, offset: &offset), -EAGAIN)
            XCTAssertEqual(index, position[k].0, "k = \(k)")
            XCTAssertEqual(offset, position[k].1, "k = \(k)")
            XCTAssertEqual(w.io.written, Array(want[..<k]))
            // Resume with a new writer (the state is in index/offset alone).
            let w2 = WriterBox(order: TOBY_LITTLE_ENDIAN)
            XCTAssertEqual(w2.write(out, index: &index, offset: &offset), 0)
            XCTAssertEqual(w.io.written + w2.io.written, want, "k = \(k)")
            XCTAssertEqual(index, frames.count)
            XCTAssertEqual(offset, 0)
        }
    }

    func testStartingMidFrame() {
        let want = referenceEncode(frames, TOBY_BIG_ENDIAN)
        var start = 0
        for (i, f) in frames.enumerated() {
            for o in 0..<(8 + f.count) {
                let out = OutFrames(frames)
                let w = WriterBox(order: TOBY_BIG_ENDIAN)
                var index = i
                var offset = UInt64(o)
                XCTAssertEqual(w.write(out, index: &index, offset: &offset), 0)
                XCTAssertEqual(w.io.written, Array(want[(start + o)...]), "frame \(i) offset \(o)")
            }
            start += 8 + f.count
        }
    }

    func testRandomShortWritesWithEINTRAndEAGAIN() {
        var rng = TestRNG(seed: 99)
        for round in 0..<300 {
            let count = rng.below(12)
            let fs = (0..<count).map { payload(rng.below(3) == 0 ? 0 : rng.below(50), seed: $0 + round) }
            let order = bothOrders[rng.below(2)]
            var script = [ScriptedIO.Send]()
            for _ in 0..<400 {
                switch rng.below(6) {
                case 0: script.append(.error(EINTR))
                case 1: script.append(.error(EAGAIN))
                case 2: script.append(.accept(0))
                default: script.append(.accept(1 + rng.below(30)))
                }
            }
            let out = OutFrames(fs, nullEmpty: rng.below(2) == 0)
            let w = WriterBox(order: order, send: script)
            let results = writeAll(w, out, flags: msgDontWait)
            XCTAssertEqual(w.io.written, referenceEncode(fs, order), "round \(round)")
            XCTAssertFalse(results.contains(-EINTR))
            XCTAssertTrue(w.io.sendFlags.allSatisfy { $0 & msgDontWait != 0 })
            checkCommon(w)
        }
    }

    func testEINTRIsRetried() {
        let want = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        let w = WriterBox(
            order: TOBY_LITTLE_ENDIAN,
            send: [.error(EINTR), .accept(3), .error(EINTR), .error(EINTR), .accept(20), .error(EINTR)])
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.write(OutFrames(frames), index: &index, offset: &offset), 0)
        XCTAssertEqual(w.io.written, want)
        XCTAssertEqual(w.io.sendCalls, 7)
    }

    func testZeroByteSendIsEAGAIN() {
        let want = referenceEncode(frames, TOBY_LITTLE_ENDIAN)
        let out = OutFrames(frames)
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN, send: [.accept(10), .accept(0)])
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.write(out, index: &index, offset: &offset), -EAGAIN)
        XCTAssertEqual(w.io.sendCalls, 2, "no spinning on 0")
        XCTAssertEqual(index, 0)
        XCTAssertEqual(offset, 10)
        XCTAssertEqual(w.write(out, index: &index, offset: &offset), 0)
        XCTAssertEqual(w.io.written, want)
    }

    func testEPIPEIsReturnedWithProgress() {
        let out = OutFrames(frames)
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN, send: [.accept(13), .accept(9), .error(EPIPE)])
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.write(out, index: &index, offset: &offset), -EPIPE)
        // 13 bytes finish frame 0; 8 finish the empty frame 1; 1 more is in frame 2's prefix.
        XCTAssertEqual(index, 2)
        XCTAssertEqual(offset, 1)
        XCTAssertEqual(w.io.written, Array(referenceEncode(frames, TOBY_LITTLE_ENDIAN)[..<22]))
        let w2 = WriterBox(order: TOBY_LITTLE_ENDIAN, send: [.error(ECONNRESET)])
        index = 0
        offset = 0
        XCTAssertEqual(w2.write(out, index: &index, offset: &offset), -ECONNRESET)
        XCTAssertEqual(index, 0)
        XCTAssertEqual(offset, 0)
        checkCommon(w)
        checkCommon(w2)
    }

    func testMSGNOSIGNALAlwaysAndFlagsPassed() {
        let out = OutFrames(frames)
        for flags in [0, msgDontWait, msgNoSignal] {
            let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
            w.io.defaultAccept = 7
            writeAll(w, out, flags: flags)
            XCTAssertTrue(w.io.sendFlags.allSatisfy { $0 == msgNoSignal | flags })
            checkCommon(w)
        }
    }

    func testZeroLengthPayloadsOnly() {
        let fs = [[UInt8]](repeating: [], count: 5)
        for n in [1, 3, 8, 9, 40] {
            let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
            w.io.defaultAccept = n
            writeAll(w, OutFrames(fs, nullEmpty: n != 3))
            XCTAssertEqual(w.io.written, [UInt8](repeating: 0, count: 40))
            checkCommon(w)
        }
    }

    /// 1500 frames too large to coalesce need several sendmsg calls of at
    /// most TOBY_WRITER_IOV vectors.
    func testMoreThan512Frames() {
        let fs = (0..<1500).map { payload(Int(TOBY_WRITER_COALESCE) + 1 + $0 % 7, seed: $0) }
        let want = referenceEncode(fs, TOBY_LITTLE_ENDIAN)
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        writeAll(w, OutFrames(fs))
        XCTAssertEqual(w.io.written, want)
        XCTAssertEqual(w.io.sendIovCounts, [1024, 1024, 952], "512 two-vector frames per call")
        checkCommon(w)
    }

    /// Small frames are copied, prefix and all, into the staging buffer:
    /// consecutive ones share one vector, and a large payload in between
    /// still goes out from the caller's memory, in order.
    func testSmallFramesAreCoalesced() {
        let small = (0..<300).map { payload($0 % 65, seed: $0) }
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        writeAll(w, OutFrames(small))
        XCTAssertEqual(w.io.written, referenceEncode(small, TOBY_LITTLE_ENDIAN))
        XCTAssertEqual(w.io.sendIovCounts, [1], "300 small frames in one vector")
        checkCommon(w)

        let big = payload(Int(TOBY_WRITER_COALESCE) + 1, seed: 9)
        let mixed = [[1], [2, 2], big, [3], [], big, [4]]
        let m = WriterBox(order: TOBY_BIG_ENDIAN)
        writeAll(m, OutFrames(mixed))
        XCTAssertEqual(m.io.written, referenceEncode(mixed, TOBY_BIG_ENDIAN))
        // [1][2,2] | prefix, big | [3][] | prefix, big | [4]
        XCTAssertEqual(m.io.sendIovCounts, [7])
        checkCommon(m)
    }

    /// The staging buffer fills: the batch ends there and the next call
    /// carries on with the following frame.
    func testStageFullSplitsTheBatch() {
        let frameSize = Int(TOBY_PREFIX_SIZE) + Int(TOBY_WRITER_COALESCE)
        let perStage = Int(TOBY_WRITER_STAGE) / frameSize
        let fs = (0..<(perStage * 2 + 3)).map { payload(Int(TOBY_WRITER_COALESCE), seed: $0) }
        for accept in [Int.max, 1, 777, frameSize] {
            let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
            w.io.defaultAccept = accept
            writeAll(w, OutFrames(fs))
            XCTAssertEqual(w.io.written, referenceEncode(fs, TOBY_LITTLE_ENDIAN), "accept \(accept)")
            if accept == Int.max { XCTAssertEqual(w.io.sendCalls, 3) }
            checkCommon(w)
        }
    }

    func testMoreThan512FramesWithEmptyPayloadsAndShortWrites() {
        var rng = TestRNG(seed: 5)
        let fs = (0..<3000).map { rng.below(3) == 0 ? [] : payload(rng.below(20), seed: $0) }
        let want = referenceEncode(fs, TOBY_BIG_ENDIAN)
        for accept in [Int.max, 1000, 4099, 7] {
            let w = WriterBox(order: TOBY_BIG_ENDIAN)
            w.io.defaultAccept = accept
            writeAll(w, OutFrames(fs))
            XCTAssertEqual(w.io.written, want, "accept \(accept)")
            XCTAssertGreaterThan(w.io.sendCalls, 1)
            checkCommon(w)
        }
        // All empty: their prefixes are staged, 4096 per 32 KiB stage.
        let empties = [[UInt8]](repeating: [], count: 10_000)
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        writeAll(w, OutFrames(empties))
        XCTAssertEqual(w.io.written.count, 10_000 * 8)
        XCTAssertTrue(w.io.written.allSatisfy { $0 == 0 })
        XCTAssertEqual(w.io.sendIovCounts, [1, 1, 1])
        checkCommon(w)
    }

    func testLargePayloadWrittenInPieces() {
        let big = payload(100_000, seed: 3)
        let fs = [big, [1], big]
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        w.io.defaultAccept = 65_536
        writeAll(w, OutFrames(fs))
        XCTAssertEqual(w.io.written, referenceEncode(fs, TOBY_LITTLE_ENDIAN))
        checkCommon(w)
    }

    /// Writer output through the reader gives back the same frames.
    func testRoundTripThroughReader() {
        var rng = TestRNG(seed: 11)
        for order in bothOrders {
            let fs = (0..<400).map { _ in payload(rng.below(3) == 0 ? 0 : rng.below(100), seed: rng.below(1000)) }
            let w = WriterBox(order: order)
            w.io.defaultAccept = 333
            writeAll(w, OutFrames(fs))
            var chunks = [[UInt8]]()
            var i = 0
            let s = w.io.written
            while i < s.count {
                let n = min(1 + rng.below(80), s.count - i)
                chunks.append(Array(s[i..<(i + n)]))
                i += n
            }
            let box = ReaderBox(capacity: 64, maxFrame: 100, order: order, recv: chunks.map { .data($0) })
            let res = drain(box)
            XCTAssertEqual(res.frames, fs)
            XCTAssertEqual(res.status, statusEnd)
        }
    }

    // MARK: Raw items (already framed bytes: the event loop's output queue)

    /// Writes raw items, resuming after every -EAGAIN, as the loop does.
    private func writeAllRaw(_ w: WriterBox, _ items: OutFrames, file: StaticString = #filePath, line: UInt = #line) {
        var index = 0
        var offset: UInt64 = 0
        for _ in 0..<100_000 {
            let rc = w.writeRaw(items, index: &index, offset: &offset)
            if rc == 0 {
                XCTAssertEqual(index, items.outs.count, file: file, line: line)
                XCTAssertEqual(offset, 0, file: file, line: line)
                return
            }
            XCTAssertEqual(rc, -EAGAIN, file: file, line: line)
            // Progress never rests inside an item it finished, or on an empty one.
            if index < items.outs.count { XCTAssertLessThan(Int(offset), items.outs[index].len, file: file, line: line) }
        }
        XCTFail("no progress", file: file, line: line)
    }

    func testRawItemsGoOutAsTheyAreOneVectorEach() {
        let items: [[UInt8]] = [[1], payload(300, seed: 1), [], payload(5000, seed: 2), []]
        let w = WriterBox(order: TOBY_BIG_ENDIAN)
        writeAllRaw(w, OutFrames(items))
        XCTAssertEqual(w.io.written, items.flatMap { $0 }, "no prefix added, nothing reordered")
        XCTAssertEqual(w.io.sendIovCounts, [3], "one vector per item, none for an empty one, never staged")
        checkCommon(w)
    }

    /// Short writes of every size: each call resumes at the exact byte.
    func testRawItemsResumeAfterShortWritesOfEverySize() {
        let items: [[UInt8]] = [payload(9, seed: 1), [], payload(3, seed: 2), payload(20, seed: 3), [], [7]]
        let want = items.flatMap { $0 }
        for accept in 1...want.count {
            let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
            w.io.defaultAccept = accept
            writeAllRaw(w, OutFrames(items, nullEmpty: accept % 2 == 0))
            XCTAssertEqual(w.io.written, want, "accept \(accept)")
            checkCommon(w)
        }
    }

    /// More items than one `sendmsg` takes: several calls of at most
    /// TOBY_WRITER_IOV vectors, in order.
    func testMoreRawItemsThanOneCallTakes() {
        let items = (0..<2500).map { payload(1 + $0 % 5, seed: $0) }
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        writeAllRaw(w, OutFrames(items))
        XCTAssertEqual(w.io.written, items.flatMap { $0 })
        XCTAssertEqual(w.io.sendIovCounts, [1024, 1024, 452])
        checkCommon(w)
    }

    /// Empty raw items alone make no call at all (a sendmsg of nothing
    /// returns 0, which would read as a full socket).
    func testEmptyRawItemsAloneMakeNoCall() {
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN)
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.writeRaw(OutFrames([[], [], []]), index: &index, offset: &offset), 0)
        XCTAssertEqual(index, 3)
        XCTAssertEqual(w.io.sendCalls, 0)
    }

    /// EINTR is retried, no progress is EAGAIN, and a failure keeps the
    /// progress made.
    func testRawItemsKeepProgressThroughEINTREAGAINAndEPIPE() {
        let w = WriterBox(order: TOBY_LITTLE_ENDIAN, send: [.error(EINTR), .accept(3), .accept(0), .error(EPIPE)])
        let out = OutFrames([[1, 2, 3, 4, 5]])
        var index = 0
        var offset: UInt64 = 0
        XCTAssertEqual(w.writeRaw(out, index: &index, offset: &offset), -EAGAIN)
        XCTAssertEqual(index, 0)
        XCTAssertEqual(offset, 3)
        XCTAssertEqual(w.writeRaw(out, index: &index, offset: &offset), -EPIPE)
        XCTAssertEqual(offset, 3, "progress kept")
        XCTAssertEqual(w.io.written, [1, 2, 3])
        checkCommon(w)
    }
}
