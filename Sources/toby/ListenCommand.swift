import ArgumentParser
import TobyTCP

struct ListenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Accept connections and print every message received, one per line.",
        discussion: """
            Prints 'listening on ADDRESS' first, then one line per message: the \
            peer's address, ': ', and the message, as text when it is printable \
            UTF-8, otherwise as 0x followed by hex (always hex, without 0x, with \
            --hex). Runs until SIGINT or SIGTERM, then exits with status 0. \
            Nothing is sent back. With --read-timeout DURATION (500ms, 2s, 1m), a \
            connection that completes no message for that long is closed, with \
            one line about it on stderr.

            Examples:
              toby listen --port 15235
              toby listen --unix /tmp/toby.sock --hex
              toby listen --port 15235 --read-timeout 10s
            """)

    @OptionGroup(title: "Address") var endpoint: EndpointOptions
    @OptionGroup(title: "Framing") var framing: FramingOptions
    @OptionGroup(title: "Timeouts") var timeouts: ServerTimeoutOptions

    @Flag(help: "Print every message as hex.")
    var hex = false

    func run() throws {
        let hex = self.hex
        try Server.run(endpoint: endpoint, framing: framing, timeouts: timeouts) {
            messenger in
            ListenCommand.show(messenger, hex: hex)
        }
    }

    static func show(_ messenger: TobyMessenger, hex: Bool) {
        let prefix = messenger.peer + ": "
        do {
            let receiver = try messenger.start()
            while try receiver.receive({ bytes in Output.line(prefix + Hex.display(bytes, hex: hex)) }) != nil {}
        } catch {
            Output.connectionError(messenger.peer, error)
        }
        try? messenger.close()
    }
}
