import ArgumentParser
import TobyTCP

struct EchoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Run an echo server: every message is sent back on its connection, in order.",
        discussion: """
            Prints one line, 'listening on ADDRESS', as soon as it accepts \
            connections (with --port 0 the address holds the port that was picked), \
            then serves any number of connections at once, each on its own thread, \
            until SIGINT or SIGTERM, when it stops listening, removes its Unix socket \
            file and exits with status 0.

            A misbehaving peer (a frame over --max-frame, a reset, a frame cut short) \
            loses its own connection only; one line about it goes to stderr.

            Examples:
              toby echo --port 15235
              toby echo --port 0 --host ::
              toby echo --unix /tmp/toby.sock --byte-order big --max-frame 1M
            """)

    @OptionGroup(title: "Address") var endpoint: EndpointOptions
    @OptionGroup(title: "Framing") var framing: FramingOptions

    func run() throws {
        try Server.run(endpoint: endpoint, framing: framing, handle: EchoCommand.echo)
    }

    /// Most frames taken in one batch after a blocking receive, and their bytes.
    static let batchFrames = 512
    static let batchBytes = 1 << 20

    /// Serves one connection until the peer closes it or breaks it.
    ///
    /// Each message is first taken with the borrowing `receive { }`, which
    /// lends its bytes where they lie in the ring, and sent straight from
    /// there: no copy, one `sendmsg`. Messages that the same read already
    /// brought in (a pipelining peer) are then drained without blocking and
    /// sent back together in as few `sendmsg` calls as possible. When such a
    /// drain finds nothing (a ping-pong peer), draining pauses for a few
    /// messages so that peer does not pay an empty non-blocking read each time.
    static func echo(_ messenger: TobyMessenger) {
        do {
            let receiver = try messenger.start()
            var batch: [[UInt8]] = []
            var skipDrain = 0
            while true {
                guard try receiver.receive({ bytes in try messenger.send(bytes) }) != nil else { break }
                if skipDrain > 0 {
                    skipDrain -= 1
                    continue
                }
                var ended = false
                var failure: TobyError?
                var bytes = 0
                do {
                    while batch.count < batchFrames, bytes < batchBytes, let message = try receiver.tryReceive() {
                        bytes += message.count
                        batch.append(message)
                    }
                } catch .endOfStream {
                    ended = true
                } catch {
                    failure = error  // sent after the replies to what came before it
                }
                if batch.isEmpty {
                    skipDrain = 8
                } else {
                    try messenger.send(contentsOf: batch)
                    batch.removeAll(keepingCapacity: true)
                }
                if let failure { throw failure }
                if ended { break }
            }
            try messenger.close()
        } catch {
            Output.error("\(messenger.peer): \(error)")
            try? messenger.close()
        }
    }
}
