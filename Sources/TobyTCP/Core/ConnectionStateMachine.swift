import Glibc

/// The lifecycle of one event-loop connection, as a value with no I/O.
///
/// Every event (the peer ended, input failed, the owner closed, the output
/// drained or backed up, the server quiesced, a deadline passed) is a
/// method that moves the state and returns a ``Step``: the actions the
/// connection must now perform, in the order ``Actions`` lists them, and
/// whether it is over. `TobyConnection` owns the socket, the queues and
/// the timers and performs the steps; the decisions are all here, so they
/// are tested without sockets or threads (`ConnectionStateMachineTests`).
///
/// Invariants: once ``state`` is ``State/closed`` every event returns an
/// empty step; a step that carries ``Step/finish`` is the last one.
struct ConnectionStateMachine {
    /// One state at a time instead of interacting flags.
    enum State: Equatable {
        /// Reading and writing.
        case open
        /// The peer ended its stream; we may still write.
        case inputEnded
        /// The server is shutting down and this connection outlived its
        /// grace period: no message is delivered any more (what the peer
        /// still sends is read and discarded, so it is never reset), while
        /// sends are accepted until the owner closes: replies owed for
        /// messages already delivered still go out.
        case quiescing(inputEnded: Bool)
        /// The owner closed: queued output drains, then our side ends and
        /// the connection goes on as `then` says.
        case closing(then: AfterDrain)
        /// Our side ended; reading (and delivering) until the peer ends, or
        /// the linger runs out.
        case halfClosed
        /// Our side ended and nothing is delivered any more: what the peer
        /// still sends is read and discarded until it ends too, or until
        /// everything we sent was acknowledged and the peer has gone quiet,
        /// so that closing sends no reset that would destroy replies in
        /// flight. Reset if the peer is still sending when the linger ends.
        case lingering
        /// Input failed: queued output drains, then the descriptor closes.
        case draining
        /// Over: the descriptor is closed.
        case closed

        /// What follows once a closing connection's output has drained.
        enum AfterDrain: Equatable {
            /// The peer ended already: close the descriptor.
            case close
            /// Half-close and go on delivering until the peer ends.
            case readUntilEnd
            /// Half-close, then linger, discarding input (``lingering``).
            case linger
        }

        /// Whether the socket is read in this state.
        var reads: Bool {
            switch self {
            case .open, .halfClosed, .closing(then: .readUntilEnd), .closing(then: .linger),
                .quiescing(inputEnded: false), .lingering:
                return true
            default:
                return false
            }
        }

        /// Whether what is read is thrown away instead of delivered.
        var discards: Bool {
            switch self {
            case .quiescing, .closing(then: .linger), .lingering: return true
            default: return false
            }
        }

        /// Whether sends are queued (rather than refused).
        var acceptsSends: Bool {
            switch self {
            case .open, .inputEnded, .quiescing: return true
            default: return false
            }
        }
    }

    /// What the connection does after an event, in this order.
    struct Actions: OptionSet, Sendable {
        let rawValue: UInt16

        /// `shutdown(SHUT_RD)`: the stream cannot be resynchronised (a
        /// frame over the limit), so the peer is told to stop sending.
        static let shutdownRead = Actions(rawValue: 1 << 0)
        /// `shutdown(SHUT_WR)`: everything queued went out; our side ends.
        static let shutdownWrite = Actions(rawValue: 1 << 1)
        /// Sends other threads had accepted go into the output queue now
        /// (whatever its size); later ones are refused.
        static let absorbForeignSends = Actions(rawValue: 1 << 2)
        /// The peer has the linger time to end or to read what is queued.
        static let armLinger = Actions(rawValue: 1 << 3)
        /// Lingering began: check every little while whether the peer has
        /// everything and went quiet, and reset at the shutdown deadline.
        static let startLingerChecks = Actions(rawValue: 1 << 4)
        /// Check the peer's acknowledgements again, a little later.
        static let rearmLingerCheck = Actions(rawValue: 1 << 5)
        /// The read deadline starts again (reading resumed or began).
        static let armReadDeadline = Actions(rawValue: 1 << 6)
        /// Reading paused for output back-pressure: one episode to count.
        static let countReadPause = Actions(rawValue: 1 << 7)
        /// The read deadline ended the connection: one timeout to count.
        static let countReadTimeout = Actions(rawValue: 1 << 13)
        /// Tell the handler the peer's stream ended.
        static let notifyInputEnded = Actions(rawValue: 1 << 8)
        /// Tell the handler to finish up (``TobyServerHandler/shouldQuiesce(on:)``).
        static let notifyQuiesce = Actions(rawValue: 1 << 9)
        /// What the socket is polled for may have changed.
        static let updateInterest = Actions(rawValue: 1 << 10)
        /// Write what is queued (unless the loop flushes it after the batch).
        static let flush = Actions(rawValue: 1 << 11)
        /// Frames may wait in the ring with nothing new on the socket,
        /// which level-triggered readiness never reports: decode them now.
        static let deliverBuffered = Actions(rawValue: 1 << 12)
    }

    /// How a connection ends.
    struct Finish: Equatable {
        /// What ended it, for the handler (nil: a clean end).
        var error: TobyError?
        /// Reset (`SO_LINGER` 0) rather than close.
        var abortive: Bool
    }

    /// The outcome of one event.
    struct Step: Equatable {
        var actions: Actions = []
        /// Set when the connection is over: close the descriptor (after
        /// the actions) and report `error` to the owner.
        var finish: Finish?

        static func == (a: Step, b: Step) -> Bool { a.actions == b.actions && a.finish == b.finish }
    }

    private(set) var state = State.open
    /// Reading stopped because the output queue is above its high-water mark.
    private(set) var readPaused = false
    /// Reading stopped because an async consumer has too much unread.
    private(set) var inboundHeld = false
    /// Whether a full output queue pauses reading (a server's back-pressure:
    /// no new requests while the replies back up). An async client clears
    /// it: its sending task already suspends at the high-water mark, and a
    /// client that stopped reading while its output is full deadlocks with
    /// any server that does the same (an echo of a large one-way stream).
    var pausesReadingForOutput = true
    /// Why input failed, or why the connection ended; later sends throw it.
    private(set) var failure: TobyError?
    /// Lingering: no byte arrived since the last check.
    private(set) var lingerQuiet = true

    let highWater: Int
    let lowWater: Int

    init(highWater: Int, lowWater: Int) {
        self.highWater = highWater
        self.lowWater = lowWater
    }

    // MARK: Derived

    var isClosed: Bool { state == .closed }
    var readHeld: Bool { readPaused || inboundHeld }
    /// Whether reads now go to the handler (the state delivers, nothing holds them).
    var delivers: Bool { state.reads && !state.discards && !readHeld }
    /// Whether input is read and thrown away now.
    var discardsInput: Bool { state.reads && state.discards }
    /// Whether the socket is to be read now: to deliver, or to discard (never
    /// held: input we no longer want must not back up into a reset).
    var wantsInput: Bool { state.reads && (state.discards || !readHeld) }
    /// Whether a read deadline applies (only while plainly open).
    var readDeadlineApplies: Bool { state == .open }
    /// What a refused send throws.
    var sendError: TobyError { failure ?? .closed }

    // MARK: Input

    /// A delivering read found the peer's end of stream.
    mutating func inputEnded() -> Step {
        switch state {
        case .open:
            state = .inputEnded
            return Step(actions: [.notifyInputEnded, .updateInterest, .flush])
        case .halfClosed:
            return finish(nil)
        case .closing:
            state = .closing(then: .close)
            return Step(actions: [.flush])
        default:
            return Step()
        }
    }

    /// Bytes were read and discarded (quiescing or lingering).
    mutating func discarded() {
        lingerQuiet = false
    }

    /// A discarding read found the peer's end of stream.
    mutating func discardedInputEnded() -> Step {
        switch state {
        case .quiescing:
            state = .quiescing(inputEnded: true)
            return Step(actions: [.updateInterest])
        case .closing(then: .linger):
            state = .closing(then: .close)
            return Step(actions: [.updateInterest, .flush])
        case .lingering:
            // Both sides ended: nothing can reset what we sent.
            return finish(nil)
        default:
            return Step()
        }
    }

    /// Reading failed: a frame over the limit, a truncated frame, a read
    /// timeout or a socket error.
    mutating func inputFailed(_ error: TobyError) -> Step {
        guard state != .closed else { return Step() }
        failure = error
        if case .system(_, let code) = error, code == ECONNRESET || code == EPIPE || code == ETIMEDOUT {
            // The peer is gone: nothing queued can reach it.
            return finish(error)
        }
        var actions: Actions = [.armLinger, .flush]
        if case .frameTooLarge = error { actions.insert(.shutdownRead) }
        // Send what was queued for the complete messages, then close.
        state = .draining
        return Step(actions: actions)
    }

    // MARK: Owner

    /// The owner closes: everything accepted goes out, then our side ends.
    /// `discardingInput`: deliver nothing more and linger (the owner will
    /// not read again: an async task that ended); otherwise go on
    /// delivering until the peer ends too.
    mutating func close(discardingInput: Bool) -> Step {
        switch state {
        case .open:
            state = .closing(then: discardingInput ? .linger : .readUntilEnd)
        case .quiescing(let inputEnded):
            state = .closing(then: inputEnded ? .close : .linger)
        case .inputEnded:
            state = .closing(then: .close)
        default:
            return Step()
        }
        return Step(actions: [.absorbForeignSends, .armLinger, .updateInterest, .flush])
    }

    /// An async consumer has too much unread: stop reading.
    mutating func holdInbound() -> Step {
        guard !inboundHeld, state != .closed else { return Step() }
        inboundHeld = true
        return Step(actions: [.updateInterest])
    }

    /// The consumer caught up: read again, and decode what the ring holds.
    mutating func releaseInbound() -> Step {
        guard inboundHeld else { return Step() }
        inboundHeld = false
        guard state != .closed else { return Step() }
        var actions: Actions = [.updateInterest]
        if delivers { actions.formUnion([.armReadDeadline, .deliverBuffered]) }
        return Step(actions: actions)
    }

    // MARK: Output

    /// A write left `pending` bytes the socket did not take.
    mutating func outputBlocked(pending: Int) -> Step {
        guard state != .closed else { return Step() }
        var actions: Actions = [.updateInterest]
        // Only a state that delivers pauses: input that is discarded must
        // not back up, and a state that no longer reads has nothing to pause.
        let delivering = state.reads && !state.discards
        if pausesReadingForOutput && delivering && pending >= highWater && !readPaused {
            readPaused = true
            actions.insert(.countReadPause)
        }
        return Step(actions: actions)
    }

    /// Everything queued was written (or nothing was queued).
    mutating func outputDrained() -> Step {
        guard state != .closed else { return Step() }
        var actions: Actions = [.updateInterest]
        if readPaused {
            readPaused = false
            actions.insert(.armReadDeadline)
            if delivers { actions.insert(.deliverBuffered) }
        }
        switch state {
        case .closing(let then):
            switch then {
            case .close:
                var step = finish(nil)
                step.actions = [.shutdownWrite]
                return step
            case .readUntilEnd:
                state = .halfClosed
                actions.insert(.shutdownWrite)
            case .linger:
                actions.formUnion(startLingering())
                actions.insert(.shutdownWrite)
            }
        case .draining:
            return finish(failure)
        default:
            break
        }
        // Reading may resume only in a delivering state.
        if !delivers { actions.remove(.deliverBuffered) }
        return Step(actions: actions)
    }

    // MARK: Shutting down

    /// The server's grace period is over: stop delivering, let the owner
    /// send what it owes and close, then half-close and linger.
    mutating func quiesce() -> Step {
        switch state {
        case .open, .inputEnded:
            state = .quiescing(inputEnded: state == .inputEnded)
            readPaused = false
            inboundHeld = false
            return Step(actions: [.notifyQuiesce, .updateInterest, .flush])
        case .closing(then: .readUntilEnd):
            state = .closing(then: .linger)
            return Step(actions: [.updateInterest])
        case .halfClosed:
            return Step(actions: startLingering())
        default:
            return Step()
        }
    }

    private mutating func startLingering() -> Actions {
        state = .lingering
        lingerQuiet = true
        return [.startLingerChecks, .updateInterest]
    }

    // MARK: Deadlines

    /// The connection's own deadline passed (read timeout, linger check or
    /// linger). `unacknowledged`: bytes we sent the peer has not yet
    /// acknowledged, asked only when lingering.
    mutating func deadlinePassed(readTimeout: Duration?, unacknowledged: () -> Int) -> Step {
        switch state {
        case .open:
            // Paused by back-pressure: the deadline starts again on resuming.
            if readHeld { return Step() }
            if let readTimeout {
                // No frame completed in time: a silent or slow-loris peer.
                var step = inputFailed(.timedOut(readTimeout))
                step.actions.insert(.countReadTimeout)
                return step
            }
            return Step()
        case .lingering:
            if lingerQuiet && unacknowledged() == 0 { return finish(nil) }
            lingerQuiet = true
            return Step(actions: [.rearmLingerCheck])
        case .halfClosed, .closing, .draining:
            // The peer neither ended nor read within the linger time.
            let linger = Duration.nanoseconds(Int64(TobyConnection.lingerNanoseconds))
            return finish(failure ?? .timedOut(linger), abortive: true)
        case .inputEnded, .quiescing, .closed:
            return Step()
        }
    }

    /// Shutting down and past the linger: what is left is reset, unless
    /// the peer has everything we sent and has gone quiet.
    mutating func resetDeadlinePassed(unacknowledged: () -> Int) -> Step {
        guard state != .closed else { return Step() }
        let clean = state == .lingering && lingerQuiet && unacknowledged() == 0
        return finish(nil, abortive: !clean)
    }

    /// Ends the connection now (a socket error, an abort, the loop stopping).
    mutating func finish(_ error: TobyError?, abortive: Bool = false) -> Step {
        guard state != .closed else { return Step() }
        state = .closed
        // Later sends report why it ended (a reset is not our own close).
        if failure == nil { failure = error }
        return Step(finish: Finish(error: error, abortive: abortive))
    }
}
