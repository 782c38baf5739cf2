import ArgumentParser
import TobyTCP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct EchoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Run an echo server: every message is sent back on its connection, in order.",
        discussion: """
            Prints one line, 'listening on ADDRESS', as soon as it accepts \
            connections (with --port 0 the address holds the port that was picked), \
            then serves any number of connections at once until SIGINT or SIGTERM. \
            Then it stops listening, goes on serving the open connections until they \
            end or --grace (default 5s) passes, ends the ones left without losing a \
            reply it owes (nothing more is delivered, every reply queued is sent, the \
            stream ends, the peer's end is awaited for up to 2 s, then a reset), \
            removes its Unix socket file and exits with status 0.

            --api handler (the default) serves every connection on event loops, \
            --threads of them (default: one per core), with the loop-thread handler \
            API: each read's messages are echoed straight from the receive ring, \
            in one sendmsg. --api async serves each connection with a task of its \
            own on those loops (TobyServer.serve: for try await batch in \
            connection.batches { try await connection.send(contentsOf: batch) }). \
            --api blocking serves each connection on a thread of its own with the \
            blocking TobyMessenger API.

            A misbehaving peer (a frame over --max-frame, a reset, a frame cut short) \
            loses its own connection only; one line about it goes to stderr.

            --read-timeout DURATION (500ms, 2s, 1.5s, 1m) drops a connection that \
            completes no message for that long, with every --api: an idle peer, or \
            a slow-loris one sending a byte now and then, is closed, and one line \
            saying it timed out, naming the peer, goes to stderr. Without it a \
            connection may stay silent forever.

            Examples:
              toby echo --port 15235
              toby echo --port 0 --host ::
              toby echo --unix /tmp/toby.sock --byte-order big --max-frame 1M
              toby echo --port 0 --threads 4
              toby echo --port 0 --api async
              toby echo --port 0 --api blocking
              toby echo --port 0 --read-timeout 30s
              toby echo --port 0 --grace 30s
              toby echo --port 0 --stats 1s
            """)

    /// Which of the library's server APIs serves the connections.
    enum API: String, ExpressibleByArgument, CaseIterable {
        case handler
        case async
        case blocking
    }

    @OptionGroup(title: "Address") var endpoint: EndpointOptions
    @OptionGroup(title: "Framing") var framing: FramingOptions
    @OptionGroup(title: "Timeouts") var timeouts: ServerTimeoutOptions

    @Option(
        help: ArgumentHelp(
            "Server API: handler (event loops, the default), async (a task per connection on the loops) or blocking (a thread per connection).",
            valueName: "api"))
    var api: API = .handler

    @Option(
        help: ArgumentHelp(
            "Event-loop threads for --api handler (default: one per core).", valueName: "n"))
    var threads: Int?

    @Option(
        help: ArgumentHelp(
            "Print one line of statistics to stderr every interval (1s, 500ms): connections, messages/s and MB/s each way, reads paused, accepts refused, connections ended by errors. --api handler and async.",
            valueName: "interval"),
        transform: DurationArgument.parse)
    var stats: Duration?

    func validate() throws {
        if let threads, !(1...1024).contains(threads) {
            throw ValidationError("--threads must be in 1...1024 (got \(threads)).")
        }
        if stats != nil && api == .blocking {
            throw ValidationError("--stats applies to --api handler and async (the servers that keep statistics).")
        }
        if threads != nil && api == .blocking {
            throw ValidationError("--threads applies to --api handler and async only.")
        }
    }

    func run() throws {
        switch api {
        case .handler:
            try Server.runOnLoops(endpoint: endpoint, framing: framing, timeouts: timeouts, threads: threads, stats: stats) {
                _ in LoopEcho()
            }
        case .async:
            try Server.runOnLoops(
                endpoint: endpoint, framing: framing, timeouts: timeouts, threads: threads, stats: stats,
                serve: EchoCommand.echo)
        case .blocking:
            try Server.run(endpoint: endpoint, framing: framing, timeouts: timeouts, handle: EchoCommand.echo)
        }
    }

    /// The async echo: one task per connection, on its loop.
    @Sendable static func echo(_ connection: TobyAsyncConnection) async throws {
        do {
            for try await batch in connection.batches {
                try await connection.send(contentsOf: batch)
            }
        } catch let error as TobyError {
            Output.connectionError(connection.peer, error)
        }
    }

    /// The echo on the loop: every message of a read goes back straight
    /// from the ring, all of them in one sendmsg.
    struct LoopEcho: TobyServerHandler {
        private var inputDone = false

        func received(_ messages: TobyMessages, on connection: TobyConnection) {
            // Throws only once the connection is closing; nothing to answer then.
            try? connection.send(contentsOf: messages)
        }

        mutating func inputEnded(on connection: TobyConnection) {
            inputDone = true
            connection.close()
        }

        func connectionClosed(_ connection: TobyConnection, error: TobyError?) {
            guard let error else { return }
            // A peer that ended cleanly and left without reading its replies
            // (`toby send` without --replies) did nothing wrong.
            if inputDone, case .system(_, let code) = error, code == EPIPE || code == ECONNRESET { return }
            Output.connectionError(connection.peer, error)
        }
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
        let receiver: TobyReceiver
        do {
            receiver = try messenger.start()
        } catch {
            Output.connectionError(messenger.peer, error)
            return
        }
        do {
            try serve(messenger, receiver)
            try messenger.close()
        } catch {
            if !leftWithoutReading(error, receiver) {
                Output.connectionError(messenger.peer, error)
            }
            try? messenger.close()
        }
    }

    private static func serve(_ messenger: TobyMessenger, _ receiver: TobyReceiver) throws {
        var batch: [[UInt8]] = []
        var skipDrain = 0
        while true {
            guard try receiver.receive({ bytes in try messenger.send(bytes) }) != nil else { return }
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
                failure = error
            }
            if batch.isEmpty {
                skipDrain = 8
            } else if let failure {
                // Answer what came before the failure, but report the failure
                // (a frame too large shuts the socket, so this send may fail).
                try? messenger.send(contentsOf: batch)
                throw failure
            } else {
                try messenger.send(contentsOf: batch)
                batch.removeAll(keepingCapacity: true)
            }
            if let failure { throw failure }
            if ended { return }
        }
    }

    /// True when `error` is a reply that could not be written (EPIPE,
    /// ECONNRESET) because the peer had already ended its stream cleanly and
    /// gone away without reading the replies: `toby send` without
    /// `--replies` does that. Such a peer did nothing wrong, so no line is
    /// logged. A peer that reset the connection mid-stream is still reported.
    private static func leftWithoutReading(_ error: Error, _ receiver: TobyReceiver) -> Bool {
        guard case .system(_, let code)? = error as? TobyError, code == EPIPE || code == ECONNRESET else {
            return false
        }
        while true {
            do throws(TobyError) {
                // Anything still buffered was sent before the peer's end of stream.
                if try receiver.tryReceive() == nil { return false }
            } catch .endOfStream {
                return true
            } catch {
                return false
            }
        }
    }
}
