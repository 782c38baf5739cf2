import ArgumentParser
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
            '00 ff 10'). The connection is closed cleanly: everything is sent before \
            the write side shuts down. On an error, one line goes to stderr and the \
            exit status is 1.

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

    @Option(help: ArgumentHelp(
        "Give up waiting for a reply after this many seconds (default: wait forever).",
        valueName: "seconds"))
    var timeout: Double?

    @Argument(help: ArgumentHelp(
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
        do {
            try send()
        } catch let error as TobyError {
            Output.error(error.description)
            throw ExitCode.failure
        } catch let error as ToolError {
            Output.error(error.description)
            throw ExitCode.failure
        }
    }

    private func send() throws {
        let configuration = try framing.configuration(readTimeout: timeout.map { Duration.seconds($0) })
        let messenger = try endpoint.connect(configuration: configuration)
        let outcome = Outcome()
        var reader: Threads.Handle?
        if replies > 0 {
            let receiver = try messenger.start()
            let (expected, hex) = (replies, self.hex)
            reader = try Threads.start {
                outcome.collect(from: receiver, expected: expected, hex: hex)
            }
        }

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
            try messenger.close()
        } catch let error as TobyError {
            // If the replies already broke the connection, that is the cause.
            throw outcome.error ?? error
        }

        guard let reader else { return }
        reader.join()
        if let error = outcome.error { throw error }
        let received = outcome.received
        if received < replies {
            throw ToolError("the peer closed the connection after \(received) of \(replies) replies")
        }
    }

    private func payload(_ text: String, where place: String) throws -> [UInt8] {
        guard hex else { return Array(text.utf8) }
        guard let bytes = Hex.decode(text) else {
            throw ToolError("\(place) is not hex (two digits a byte, e.g. 00ff10): '\(text)'")
        }
        return bytes
    }

    /// What the reply thread saw: how many replies, and the error if any.
    private final class Outcome: Sendable {
        private let state = Mutex<(received: Int, error: TobyError?)>((0, nil))

        var received: Int { state.withLock { $0.received } }
        var error: TobyError? { state.withLock { $0.error } }

        func collect(from receiver: TobyReceiver, expected: Int, hex: Bool) {
            do {
                for _ in 0..<expected {
                    let got: Void? = try receiver.receive { bytes in Output.line(Hex.display(bytes, hex: hex)) }
                    if got == nil { return }
                    state.withLock { $0.received += 1 }
                }
            } catch let error as TobyError {
                state.withLock { $0.error = error }
            } catch {
                state.withLock { $0.error = .invalidConfiguration("\(error)") }
            }
        }
    }
}
