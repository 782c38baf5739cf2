import Glibc
import XCTest

@testable import TobyTCP

/// The event-loop connection's lifecycle, driven without sockets, loops or
/// threads: each event's step (actions and finish) and the state it leaves.
final class ConnectionStateMachineTests: XCTestCase {
    typealias Machine = ConnectionStateMachine
    typealias Step = ConnectionStateMachine.Step
    typealias Finish = ConnectionStateMachine.Finish

    private func machine() -> Machine { Machine(highWater: 1000, lowWater: 100) }
    private let tooLarge = TobyError.frameTooLarge(length: 99, limit: 10, prefix: [99, 0, 0, 0, 0, 0, 0, 0])
    private let reset = TobyError.system(operation: "recvmsg", errno: ECONNRESET)

    func testWhatEachStateReadsDiscardsAndAccepts() {
        let table: [(Machine.State, reads: Bool, discards: Bool, sends: Bool)] = [
            (.open, true, false, true),
            (.inputEnded, false, false, true),
            (.quiescing(inputEnded: false), true, true, true),
            (.quiescing(inputEnded: true), false, true, true),
            (.closing(then: .close), false, false, false),
            (.closing(then: .readUntilEnd), true, false, false),
            (.closing(then: .linger), true, true, false),
            (.halfClosed, true, false, false),
            (.lingering, true, true, false),
            (.draining, false, false, false),
            (.closed, false, false, false),
        ]
        for (state, reads, discards, sends) in table {
            XCTAssertEqual(state.reads, reads, "\(state)")
            XCTAssertEqual(state.discards, discards, "\(state)")
            XCTAssertEqual(state.acceptsSends, sends, "\(state)")
        }
    }

    func testOwnerCloseWhileThePeerSendsHalfClosesAndDeliversUntilItsEnd() {
        var m = machine()
        XCTAssertEqual(
            m.close(discardingInput: false), Step(actions: [.absorbForeignSends, .armLinger, .updateInterest, .flush]))
        XCTAssertEqual(m.state, .closing(then: .readUntilEnd))
        XCTAssertFalse(m.state.acceptsSends)
        XCTAssertEqual(m.sendError, .closed)
        XCTAssertTrue(m.delivers, "replies to what the peer still sends are not owed, but its messages are read")
        XCTAssertEqual(m.close(discardingInput: false), Step(), "a second close changes nothing")
        XCTAssertEqual(m.outputDrained(), Step(actions: [.shutdownWrite, .updateInterest]))
        XCTAssertEqual(m.state, .halfClosed)
        XCTAssertEqual(m.inputEnded(), Step(finish: Finish(error: nil, abortive: false)))
        XCTAssertTrue(m.isClosed)
    }

    func testCloseAfterThePeerEndedClosesOnceTheOutputDrains() {
        var m = machine()
        XCTAssertEqual(m.inputEnded(), Step(actions: [.notifyInputEnded, .updateInterest, .flush]))
        XCTAssertEqual(m.state, .inputEnded)
        XCTAssertFalse(m.wantsInput)
        XCTAssertTrue(m.state.acceptsSends, "replies may still be sent after the peer's end")
        XCTAssertEqual(m.close(discardingInput: false).actions, [.absorbForeignSends, .armLinger, .updateInterest, .flush])
        XCTAssertEqual(m.state, .closing(then: .close))
        XCTAssertEqual(m.outputBlocked(pending: 10), Step(actions: [.updateInterest]), "still draining")
        XCTAssertEqual(m.outputDrained(), Step(actions: [.shutdownWrite], finish: Finish(error: nil, abortive: false)))
    }

    func testThePeerEndingWhileWeDrainLeavesNothingToReadFor() {
        var m = machine()
        _ = m.close(discardingInput: false)
        XCTAssertEqual(m.inputEnded(), Step(actions: [.flush]))
        XCTAssertEqual(m.state, .closing(then: .close))
        XCTAssertFalse(m.wantsInput)
    }

    func testACloseThatDiscardsInputLingersUntilThePeerHasEverythingAndGoesQuiet() {
        var m = machine()
        _ = m.close(discardingInput: true)
        XCTAssertEqual(m.state, .closing(then: .linger))
        XCTAssertFalse(m.delivers)
        XCTAssertTrue(m.discardsInput)
        XCTAssertEqual(m.outputDrained(), Step(actions: [.shutdownWrite, .startLingerChecks, .updateInterest]))
        XCTAssertEqual(m.state, .lingering)
        // Bytes still arrive: not quiet, check again later.
        m.discarded()
        XCTAssertEqual(m.deadlinePassed(readTimeout: .seconds(1)) { 0 }, Step(actions: [.rearmLingerCheck]))
        // Quiet now, but the peer has not acknowledged everything.
        XCTAssertEqual(m.deadlinePassed(readTimeout: nil) { 5 }, Step(actions: [.rearmLingerCheck]))
        // Quiet and acknowledged: a clean close.
        XCTAssertEqual(m.deadlinePassed(readTimeout: nil) { 0 }, Step(finish: Finish(error: nil, abortive: false)))
    }

    func testLingeringEndsCleanlyWhenThePeerEndsToo() {
        var m = machine()
        _ = m.close(discardingInput: true)
        _ = m.outputDrained()
        XCTAssertEqual(m.discardedInputEnded(), Step(finish: Finish(error: nil, abortive: false)))
    }

    func testThePeerEndingBeforeALingeringCloseDrainedSkipsTheLinger() {
        var m = machine()
        _ = m.close(discardingInput: true)
        XCTAssertEqual(m.discardedInputEnded(), Step(actions: [.updateInterest, .flush]))
        XCTAssertEqual(m.state, .closing(then: .close))
        XCTAssertEqual(m.outputDrained().finish, Finish(error: nil, abortive: false))
    }

    func testAFrameTooLargeShutsReadingAndDrainsTheRepliesOwed() {
        var m = machine()
        XCTAssertEqual(m.inputFailed(tooLarge), Step(actions: [.shutdownRead, .armLinger, .flush]))
        XCTAssertEqual(m.state, .draining)
        XCTAssertFalse(m.wantsInput)
        XCTAssertFalse(m.state.acceptsSends)
        XCTAssertEqual(m.sendError, tooLarge, "later sends say why")
        XCTAssertEqual(m.outputBlocked(pending: 5000).actions, [.updateInterest])
        XCTAssertEqual(m.outputDrained(), Step(finish: Finish(error: tooLarge, abortive: false)))
    }

    func testATruncatedFrameDrainsWithoutShuttingReading() {
        var m = machine()
        let truncated = TobyError.truncatedFrame(expected: 10, received: 3)
        XCTAssertEqual(m.inputFailed(truncated), Step(actions: [.armLinger, .flush]))
        XCTAssertEqual(m.outputDrained().finish, Finish(error: truncated, abortive: false))
    }

    func testAPeerThatIsGoneEndsTheConnectionAtOnce() {
        for code in [ECONNRESET, EPIPE, ETIMEDOUT] {
            var m = machine()
            let error = TobyError.system(operation: "recvmsg", errno: code)
            XCTAssertEqual(m.inputFailed(error), Step(finish: Finish(error: error, abortive: false)), "\(code)")
        }
    }

    func testBackPressurePausesReadingOnceAndResumesWhenDrained() {
        var m = machine()
        XCTAssertEqual(m.outputBlocked(pending: 999), Step(actions: [.updateInterest]), "below the high-water mark")
        XCTAssertTrue(m.delivers)
        XCTAssertEqual(m.outputBlocked(pending: 1000), Step(actions: [.updateInterest, .countReadPause]))
        XCTAssertFalse(m.delivers)
        XCTAssertFalse(m.wantsInput)
        XCTAssertEqual(m.outputBlocked(pending: 5000), Step(actions: [.updateInterest]), "one episode, counted once")
        XCTAssertEqual(m.outputDrained(), Step(actions: [.updateInterest, .armReadDeadline, .deliverBuffered]))
        XCTAssertTrue(m.delivers)
        XCTAssertEqual(m.outputDrained(), Step(actions: [.updateInterest]), "nothing was paused")
    }

    func testAnAsyncClientReadsOnWhileItsOutputIsFull() {
        var m = machine()
        m.pausesReadingForOutput = false
        XCTAssertEqual(m.outputBlocked(pending: 1 << 30), Step(actions: [.updateInterest]))
        XCTAssertTrue(m.delivers)
    }

    func testAnAsyncConsumerHoldsAndReleasesReading() {
        var m = machine()
        XCTAssertEqual(m.holdInbound(), Step(actions: [.updateInterest]))
        XCTAssertFalse(m.wantsInput)
        XCTAssertEqual(m.holdInbound(), Step())
        XCTAssertEqual(m.deadlinePassed(readTimeout: .seconds(1)) { 0 }, Step(), "a held connection does not time out")
        XCTAssertEqual(m.releaseInbound(), Step(actions: [.updateInterest, .armReadDeadline, .deliverBuffered]))
        XCTAssertEqual(m.releaseInbound(), Step())
        // Held and paused together: releasing one leaves the other.
        _ = m.holdInbound()
        _ = m.outputBlocked(pending: 1000)
        XCTAssertEqual(m.releaseInbound(), Step(actions: [.updateInterest]))
        XCTAssertFalse(m.delivers)
    }

    func testInputWeDiscardIsNeverHeld() {
        var m = machine()
        _ = m.holdInbound()
        _ = m.close(discardingInput: true)
        XCTAssertTrue(m.wantsInput, "held input would back up into a reset")
        XCTAssertFalse(m.delivers)
    }

    func testTheReadTimeoutEndsAnOpenConnectionOnly() {
        var m = machine()
        XCTAssertEqual(m.deadlinePassed(readTimeout: nil) { 0 }, Step(), "no timeout configured")
        XCTAssertEqual(m.deadlinePassed(readTimeout: .seconds(2)) { 0 }.actions, [.armLinger, .flush, .countReadTimeout])
        XCTAssertEqual(m.state, .draining)
        XCTAssertEqual(m.sendError, .timedOut(.seconds(2)))
        var ended = machine()
        _ = ended.inputEnded()
        XCTAssertEqual(ended.deadlinePassed(readTimeout: .seconds(2)) { 0 }, Step(), "nothing is read any more")
    }

    func testTheLingerResetsAPeerThatNeitherEndsNorReads() {
        let linger = TobyError.timedOut(.nanoseconds(Int64(TobyConnection.lingerNanoseconds)))
        var halfClosed = machine()
        _ = halfClosed.close(discardingInput: false)
        _ = halfClosed.outputDrained()
        XCTAssertEqual(halfClosed.deadlinePassed(readTimeout: nil) { 0 }, Step(finish: Finish(error: linger, abortive: true)))
        var draining = machine()
        _ = draining.inputFailed(tooLarge)
        XCTAssertEqual(
            draining.deadlinePassed(readTimeout: nil) { 0 }, Step(finish: Finish(error: tooLarge, abortive: true)),
            "the failure is what is reported")
        var closing = machine()
        _ = closing.close(discardingInput: false)
        XCTAssertEqual(closing.deadlinePassed(readTimeout: nil) { 0 }.finish, Finish(error: linger, abortive: true))
    }

    func testQuiescingStopsDeliveringButAcceptsTheRepliesOwed() {
        var m = machine()
        _ = m.holdInbound()
        _ = m.outputBlocked(pending: 2000)
        XCTAssertEqual(m.quiesce(), Step(actions: [.notifyQuiesce, .updateInterest, .flush]))
        XCTAssertEqual(m.state, .quiescing(inputEnded: false))
        XCTAssertFalse(m.readHeld, "discarding is never held")
        XCTAssertTrue(m.discardsInput)
        XCTAssertTrue(m.state.acceptsSends)
        XCTAssertEqual(m.discardedInputEnded(), Step(actions: [.updateInterest]))
        XCTAssertEqual(m.state, .quiescing(inputEnded: true))
        XCTAssertFalse(m.wantsInput)
        _ = m.close(discardingInput: false)
        XCTAssertEqual(m.state, .closing(then: .close))
        XCTAssertEqual(m.outputDrained().finish, Finish(error: nil, abortive: false))
    }

    func testQuiescingAnOwnerCloseOrAHalfCloseTurnsItIntoALinger() {
        var closing = machine()
        _ = closing.close(discardingInput: false)
        XCTAssertEqual(closing.quiesce(), Step(actions: [.updateInterest]))
        XCTAssertEqual(closing.state, .closing(then: .linger))
        var quiescing = machine()
        _ = quiescing.quiesce()
        _ = quiescing.close(discardingInput: false)
        XCTAssertEqual(quiescing.state, .closing(then: .linger), "the peer has not ended: linger, discarding")
        var halfClosed = machine()
        _ = halfClosed.close(discardingInput: false)
        _ = halfClosed.outputDrained()
        XCTAssertEqual(halfClosed.quiesce(), Step(actions: [.startLingerChecks, .updateInterest]))
        XCTAssertEqual(halfClosed.state, .lingering)
        XCTAssertEqual(halfClosed.quiesce(), Step(), "already lingering")
    }

    func testTheShutdownDeadlineResetsAllButAQuietAcknowledgedLinger() {
        var open = machine()
        XCTAssertEqual(open.resetDeadlinePassed { 0 }, Step(finish: Finish(error: nil, abortive: true)))
        var quiet = machine()
        _ = quiet.close(discardingInput: true)
        _ = quiet.outputDrained()
        XCTAssertEqual(quiet.resetDeadlinePassed { 0 }, Step(finish: Finish(error: nil, abortive: false)))
        var unacknowledged = machine()
        _ = unacknowledged.close(discardingInput: true)
        _ = unacknowledged.outputDrained()
        XCTAssertEqual(unacknowledged.resetDeadlinePassed { 1 }.finish, Finish(error: nil, abortive: true))
        var noisy = machine()
        _ = noisy.close(discardingInput: true)
        _ = noisy.outputDrained()
        noisy.discarded()
        XCTAssertEqual(noisy.resetDeadlinePassed { 0 }.finish, Finish(error: nil, abortive: true))
    }

    func testTheFirstFailureIsTheOneLaterSendsReport() {
        var m = machine()
        _ = m.inputFailed(tooLarge)
        XCTAssertEqual(m.finish(reset).finish, Finish(error: reset, abortive: false))
        XCTAssertEqual(m.sendError, tooLarge)
        var n = machine()
        _ = n.finish(reset)
        XCTAssertEqual(n.sendError, reset)
    }

    /// Every event, for the random walk and the closed-state check.
    private static let events: [(String, @Sendable (inout Machine) -> Step)] = [
        ("inputEnded", { $0.inputEnded() }),
        ("discardedInputEnded", { $0.discardedInputEnded() }),
        (
            "discarded",
            {
                $0.discarded(); return Step()
            }
        ),
        ("tooLarge", { $0.inputFailed(.frameTooLarge(length: 9, limit: 1, prefix: [])) }),
        ("reset", { $0.inputFailed(.system(operation: "recvmsg", errno: ECONNRESET)) }),
        ("close", { $0.close(discardingInput: false) }),
        ("closeDiscarding", { $0.close(discardingInput: true) }),
        ("hold", { $0.holdInbound() }),
        ("release", { $0.releaseInbound() }),
        ("blocked", { $0.outputBlocked(pending: 1000) }),
        ("drained", { $0.outputDrained() }),
        ("quiesce", { $0.quiesce() }),
        ("deadline", { $0.deadlinePassed(readTimeout: .seconds(1)) { 0 } }),
        ("deadlineBusy", { $0.deadlinePassed(readTimeout: .seconds(1)) { 7 } }),
        ("resetDeadline", { $0.resetDeadlinePassed { 0 } }),
        ("abort", { $0.finish(nil, abortive: true) }),
    ]

    func testAClosedConnectionIgnoresEveryEvent() {
        var m = machine()
        _ = m.finish(nil)
        for (name, event) in Self.events {
            XCTAssertEqual(event(&m), Step(), name)
            XCTAssertTrue(m.isClosed, name)
        }
    }

    /// Random walks through every reachable state: what the peer ended is
    /// never read again, what was refused is never accepted again, nothing
    /// discarded is ever delivered again, exactly one step finishes, and
    /// each step's actions make sense in the state it leaves.
    func testRandomWalksKeepTheInvariants() {
        var generator = SplitMix(seed: 0x70b7)
        for walk in 0..<2000 {
            var m = machine()
            var trail: [String] = []
            var finishes = 0
            var everStoppedReading = false
            var everRefusedSends = false
            var everDiscarded = false
            for _ in 0..<40 {
                let (name, event) = Self.events[Int(generator.next() % UInt64(Self.events.count))]
                trail.append(name)
                let before = m.state
                let step = event(&m)
                let context = "walk \(walk): \(trail.joined(separator: " "))"
                if step.finish != nil {
                    finishes += 1
                    XCTAssertTrue(m.isClosed, context)
                }
                if m.isClosed && step.finish == nil { XCTAssertEqual(step, Step(), context) }
                if step.actions.contains(.deliverBuffered) { XCTAssertTrue(m.delivers, context) }
                if step.actions.contains(.shutdownWrite) {
                    XCTAssertEqual(before.acceptsSends, false, "half-closed before the owner closed: \(context)")
                }
                if step.actions.contains(.notifyInputEnded) { XCTAssertEqual(before, .open, context) }
                if m.state.reads {
                    XCTAssertFalse(everStoppedReading, "read again after the peer's end or a failure: \(context)")
                } else if !m.isClosed {
                    everStoppedReading = true
                }
                if m.state.acceptsSends {
                    XCTAssertFalse(everRefusedSends, "accepted sends again: \(context)")
                } else {
                    everRefusedSends = true
                }
                if m.delivers { XCTAssertFalse(everDiscarded, "delivered after discarding: \(context)") }
                if m.discardsInput { everDiscarded = true }
            }
            XCTAssertLessThanOrEqual(finishes, 1, trail.joined(separator: " "))
        }
    }
}

/// A small deterministic generator (SplitMix64), so a failing walk repeats.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_B9E4
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
