import ArgumentParser
import Dispatch
import Synchronization
import TobyTCP

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Connect, send messages, optionally print the replies, and close.",
        discussion: """
            Each MESSAGE argument is sent as one message; with no MESSAGE, each \
            line of standard input is (without its line ending). With --replies N \
            it then waits for N messages back and prints each on its own line: as \
            text when it is printable UTF-8, otherwise as 0x followed by hex. With \
            --hex, messages are given and printed as hex ('00ff10', '0x00ff10' or \
            '00 ff 10'). Other messages from the peer are read and discarded.

            The connection is closed cleanly: everything is sent; with --replies N \
            the write side stays open until the N replies have arrived, or until \
            none has arrived for --timeout seconds (default 2), since some peers \
            (the Rust tobytcp crate) stop answering once they see the end of the \
            stream; then the write side is shut down (replies still missing are \
            waited for as before), and toby waits for the peer to close its side \
            too (at most --timeout, default 2 seconds), so the peer is never reset \
            while answering. On an error, one line goes to stderr and the exit \
            status is 1.

            Examples:
              toby send --port 15235 "toby is a good dog"
              toby send --port 15235 --replies 2 hello world
              printf 'one\\ntwo\\n' | toby send --port 15235 --replies 2
              toby send --unix /tmp/toby.sock --hex --replies 1 00ff10
              toby send --port 15235 --byte-order big --timeout 5 --replies 1 ping
            """)

    @OptionGroup(title: "Address") var endpoint: EndpointOptions
    @OptionGroup(title: "Framing") var framing: FramingOptions

    @Flag(help: "Messages are hex, and replies are printed as hex.")
    var hex = false

    @Option(help: ArgumentHelp("Wait for this many messages back and print them.", valueName: "n"))
    var replies = 0

    @Option(
        help: ArgumentHelp(
            "Give up waiting for a reply after this many seconds (default: wait forever), and wait at most this long for the peer to close (default 2).",
            valueName: "seconds"))
    var timeout: Double?

    @Argument(
        help: ArgumentHelp(
            "Messages to send, one message each. Without any, each line of stdin is one message.",
            valueName: "message"))
    var messages: [String] = []

    func validate() throws {
        if replies < 0 { throw ValidationError("--replies must not be negative (got \(replies)).") }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be positive (got \(timeout)).") }
        if hex {
            for message in messages where Hex.decode(message) == nil {
                throw ValidationError("'\(message)' is not hex (two digits a byte, e.g. 00ff10).")
            }
        }
    }

    func run() throws {
        try ToolError.exitingOnFailure { try send() }
    }

    private func send() throws {
        let configuration = try framing.configuration(readTimeout: timeout.map { Duration.seconds($0) })
        let messenger = try endpoint.connect(configuration: configuration)
        // A reader runs from the start, even without --replies: a peer that
        // answers (an echo) must never be left blocked on a full socket
        // buffer while we are still sending to it.
        let receiver = try messenger.start()
        let replies = Replies(expected: replies, hex: hex)
        try Threads.spawn(stackSize: connectionStack) { replies.read(from: receiver) }

        do {
            if messages.isEmpty {
                var lineNumber = 0
                while let line = readLine(strippingNewline: true) {
                    lineNumber += 1
                    try messenger.send(try payload(line, where: "line \(lineNumber) of stdin"))
                }
            } else {
                for message in messages {
                    try messenger.send(try payload(message, where: "argument"))
                }
            }
            // Only then end the stream: a peer built on the Rust crate shuts
            // its socket down both ways when it reads our end of stream, and
            // drops every reply it still owes. Bounded: once no reply came
            // for --timeout (default 2 s) we close anyway, so a peer that
            // answers fewer (an echo) sees the end and lets us report it.
            let idle = timeout ?? 2
            while !replies.finished {
                if replies.progress.wait(timeout: .now() + idle) == .timedOut { break }
            }
            try messenger.close()
            replies.expectedDone.wait()
        } catch let error as TobyError {
            // If the replies already broke the connection, that is the cause.
            throw replies.error ?? error
        }

        if let error = replies.error { throw error }
        if replies.received < self.replies {
            throw ToolError("the peer closed the connection after \(replies.received) of \(self.replies) replies")
        }
        // Linger: let the peer see our end of stream and close its side
        // before we exit, so that it is not reset while answering (and loses
        // nothing still in flight). Bounded, for peers that never close.
        let linger = timeout ?? 2
        if replies.streamDone.wait(timeout: .now() + linger) == .timedOut {
            receiver.close()
        }
    }

    private func payload(_ text: String, where place: String) throws -> [UInt8] {
        guard hex else { return Array(text.utf8) }
        guard let bytes = Hex.decode(text) else {
            throw ToolError("\(place) is not hex (two digits a byte, e.g. 00ff10): '\(text)'")
        }
        return bytes
    }

    /// The reply thread: prints the first `expected` messages, then reads
    /// and discards the rest until the peer closes.
    private final class Replies: Sendable {
        let expected: Int
        let hex: Bool
        /// Signalled once the expected replies are in (or cannot come).
        let expectedDone = DispatchSemaphore(value: 0)
        /// Signalled when the stream has ended.
        let streamDone = DispatchSemaphore(value: 0)
        /// Signalled for every reply, and once more when they are all in
        /// (or cannot come).
        let progress = DispatchSemaphore(value: 0)
        private let state = Mutex<(received: Int, error: TobyError?, finished: Bool)>((0, nil, false))

        init(expected: Int, hex: Bool) {
            self.expected = expected
            self.hex = hex
        }

        var received: Int { state.withLock { $0.received } }
        var error: TobyError? { state.withLock { $0.error } }
        /// The expected replies are in, or cannot come.
        var finished: Bool { state.withLock { $0.finished } }

        func read(from receiver: TobyReceiver) {
            defer { streamDone.signal() }
            let more = readExpected(from: receiver)
            state.withLock { $0.finished = true }
            progress.signal()
            expectedDone.signal()
            guard more else { return }
            // Unasked-for messages: read so the peer is never blocked, not shown.
            while (try? receiver.receive({ _ in })) != nil {}
        }

        /// Prints the expected replies; false if the stream ended or failed.
        private func readExpected(from receiver: TobyReceiver) -> Bool {
            do {
                for _ in 0..<expected {
                    let got: Void? = try receiver.receive { bytes in Output.line(Hex.display(bytes, hex: hex)) }
                    if got == nil { return false }
                    state.withLock { $0.received += 1 }
                    progress.signal()
                }
                return true
            } catch {
                state.withLock { $0.error = error as? TobyError ?? .invalidConfiguration("\(error)") }
                return false
            }
        }
    }
}
