import ArgumentParser
import Histogram
import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// `toby bench`'s modes.
enum BenchMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// Keep `--in-flight` messages unanswered on each connection.
    case pipeline
    /// One message, its reply, the next message.
    case pingPong = "ping-pong"
    /// Send as fast as the server takes them; replies are read, not checked.
    case oneWay = "one-way"
}

/// `toby bench --api`: which TobyTCP client the generator is built on.
enum BenchAPI: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// `TobyAsyncConnection`s on event loops (tasks, no thread per connection).
    case async
    /// `TobyMessenger`s, a sender and a receiver thread per connection.
    case blocking
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load a TobyTcp server and measure it, as redis-benchmark does for Redis.",
        discussion: """
            Opens --connections connections (blocking messengers, a sender and \
            a receiver thread each), sends --size byte messages for --warmup, \
            then measures for --duration, then ends each connection cleanly \
            and waits for the replies still owed and the server's end of stream.

            Modes: pipeline keeps --in-flight messages unanswered per connection \
            (writing as many as the window has room for in one call) and needs \
            an echo server; ping-pong sends one message and waits for its reply \
            (--in-flight does not apply); one-way sends as fast as the server \
            takes them and reads back whatever comes, unchecked (any server, \
            'toby listen' included; what the last socket buffers hold when the \
            run ends is counted as sent).

            In pipeline and ping-pong mode every byte of every reply is checked \
            against the message it answers: a reply lost, reordered, cut or \
            corrupted ends the run with one line on stderr naming the connection, \
            the message and the byte, and exit status 1; so does a server that \
            leaves a message unanswered for --timeout, or ends a connection early.

            A progress line goes to stderr every second (--quiet: none); the \
            summary goes to stdout, as a table or, with --json, as one JSON object. \
            Megabytes are 10^6 payload bytes, counted one way; latency is the \
            time from writing a message to its whole reply arriving.

            Examples:
              toby bench --port 15235
              toby bench --port 15235 --mode ping-pong
              toby bench --port 15235 --connections 64 --in-flight 16 --duration 10s
              toby bench --port 15235 --mode one-way --size 1MiB --json
            """)

    @OptionGroup(title: "Address") var endpoint: EndpointOptions
    @OptionGroup(title: "Framing") var framing: FramingOptions

    @Option(help: ArgumentHelp("pipeline, ping-pong or one-way.", valueName: "mode"))
    var mode: BenchMode = .pipeline

    @Option(name: [.customShort("c"), .long], help: ArgumentHelp("Connections to open.", valueName: "n"))
    var connections = 1

    @Option(help: ArgumentHelp("Payload bytes per message (suffixes K, M allowed).", valueName: "bytes"))
    var size = ByteCount(bytes: 64)

    @Option(
        name: .customLong("in-flight"),
        help: ArgumentHelp("Pipeline mode: messages kept unanswered on each connection.", valueName: "n"))
    var inFlight = 64

    @Option(
        help: ArgumentHelp("How long to measure, after the warm-up (500ms, 5s, 1m).", valueName: "duration"),
        transform: DurationArgument.parse)
    var duration: Duration = .seconds(5)

    @Option(
        help: ArgumentHelp("How long to run before measuring (0: not at all).", valueName: "duration"),
        transform: DurationArgument.parseAllowingZero)
    var warmup: Duration = .seconds(1)

    @Option(
        help: ArgumentHelp(
            "Fail if a message stays unanswered this long (or the server does not end the stream this long after the last reply).",
            valueName: "duration"),
        transform: DurationArgument.parse)
    var timeout: Duration = .seconds(10)

    @Option(
        help: ArgumentHelp(
            "The client: async (TobyAsyncConnection tasks on --threads event loops) or blocking (TobyMessenger, two threads per connection). Default: async for pipeline, blocking for ping-pong and one-way.",
            valueName: "api"))
    var api: BenchAPI?

    @Option(help: ArgumentHelp("Event loops for --api async (default: one per core).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Print the summary as one JSON object.")
    var json = false

    @Flag(help: "No progress line.")
    var quiet = false

    func validate() throws {
        if endpoint.port == 0 { throw ValidationError("--port 0 has no server to load; give the server's port.") }
        if connections < 1 { throw ValidationError("--connections must be at least 1 (got \(connections)).") }
        if inFlight < 1 { throw ValidationError("--in-flight must be at least 1 (got \(inFlight)).") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads)).") }
        if threads != nil && resolvedAPI == .blocking {
            throw ValidationError("--threads applies to --api async only.")
        }
        if size.bytes > framing.maxFrame.bytes {
            throw ValidationError("--size \(size.bytes) is more than --max-frame \(framing.maxFrame.bytes).")
        }
    }

    func run() throws {
        try ToolError.exitingOnFailure {
            let summary = try bench()
            Output.line(json ? summary.json : summary.table)
        }
    }

    private func bench() throws -> BenchSummary {
        // No read timeout: a receive with one polls before each read, three
        // syscalls where one blocking recvmsg does (measured: 64 connections
        // at 0.6x the C load generator). `watch` enforces --timeout instead.
        let configuration = try framing.configuration()
        let payloads = BenchPayloads(size: size.bytes)
        // Connections share the messages' arrays unless they are small:
        // sending and checking retain and release them, and a reference
        // count that every connection's threads touch bounces between the
        // cores (measured: 64 connections ran at 0.54x the C load generator
        // with shared arrays).
        let ownCopies = connections * payloads.variants.count * max(size.bytes, 64) <= 64 << 20
        let window = mode == .pipeline ? inFlight : 1
        let run = BenchRun()
        func payloadsFor(_ index: Int) -> BenchPayloads {
            ownCopies && index > 0 ? BenchPayloads(size: size.bytes) : payloads
        }
        var all: [BenchLoad] = []
        var threads = 0
        switch resolvedAPI {
        case .blocking:
            var messengers: [TobyMessenger] = []
            messengers.reserveCapacity(connections)
            for _ in 0..<connections { messengers.append(try endpoint.connect(configuration: configuration)) }
            let clock = startClock()
            for (index, messenger) in messengers.enumerated() {
                let connection = try BenchConnection(
                    index: index, messenger: messenger, payloads: payloadsFor(index), window: clock,
                    inFlight: window, run: run)
                all.append(connection)
                threads += try connection.start(mode)
            }
            try watch(all, run: run, threads: threads, clock: clock)
        case .async:
            let group = try TobyEventLoopGroup(threads: self.threads ?? TobyEventLoopGroup.coreCount)
            var made: [TobyAsyncConnection] = []
            made.reserveCapacity(connections)
            for _ in 0..<connections {
                made.append(try BenchAsyncConnection.connect(endpoint, configuration: configuration, group: group))
            }
            let clock = startClock()
            for (index, connection) in made.enumerated() {
                let load = BenchAsyncConnection(
                    index: index, connection: connection, payloads: payloadsFor(index), window: clock,
                    inFlight: window, run: run)
                all.append(load)
                threads += load.start(mode)
            }
            try watch(all, run: run, threads: threads, clock: clock)
        }
        var latency = all[0].figures.latency
        var measured = all[0].figures.measured
        for connection in all.dropFirst() {
            latency.add(connection.figures.latency)
            measured += connection.figures.measured
        }
        return BenchSummary(
            mode: mode, api: resolvedAPI, connections: connections, size: size.bytes, inFlight: window,
            byteOrder: framing.byteOrder, seconds: Double(duration.nanoseconds) / 1e9,
            warmupSeconds: Double(warmup.nanoseconds) / 1e9, messages: measured,
            replies: all.reduce(0) { $0 + $1.repliesSoFar },
            latency: mode == .oneWay ? nil : latency)
    }

    /// `--api`, or the default for the mode: pipelining many small messages
    /// is where loops cost the generator the least CPU; ping-pong measures
    /// latency, and a blocking messenger is the lowest-latency client; for
    /// large one-way messages it is the faster reader too (the async
    /// receive path still copies a large frame once more).
    var resolvedAPI: BenchAPI { api ?? (mode == .pipeline ? .async : .blocking) }

    /// The run's clock, from now: warm-up, then the measured window.
    private func startClock() -> BenchWindow {
        let start = monotonicNanoseconds()
        return BenchWindow(start: start &+ warmup.nanoseconds, end: start &+ warmup.nanoseconds &+ duration.nanoseconds)
    }

    /// Prints the progress line every second until every thread is done;
    /// throws the run's first failure at once (threads a broken server
    /// holds blocked are not waited for: the process ends), and fails a
    /// connection whose replies stopped for `--timeout` while it had
    /// messages unanswered, or whose server did not end the stream in time.
    private func watch(_ all: [BenchLoad], run: BenchRun, threads: Int, clock: BenchWindow) throws {
        var lastLine = monotonicNanoseconds()
        var lastCount = 0
        var progress = all.map { _ in (replies: 0, since: monotonicNanoseconds()) }
        let limit = timeout.nanoseconds
        while run.finishedThreads < threads {
            if let failure = run.failure { throw ToolError(failure) }
            let now = monotonicNanoseconds()
            if mode != .oneWay {
                for (index, connection) in all.enumerated() {
                    let replies = connection.repliesSoFar
                    if replies != progress[index].replies {
                        progress[index] = (replies, now)
                        continue
                    }
                    guard now &- progress[index].since >= limit else { continue }
                    let sent = connection.sentSoFar
                    let place = "connection \(index + 1) (\(connection.peer))"
                    if replies < sent {
                        throw ToolError(
                            "\(place): no reply for \(timeout): message \(replies + 1) of \(sent) sent is unanswered")
                    }
                    if connection.isSendingDone {
                        throw ToolError("\(place): the server did not end the stream within \(timeout) of the last reply")
                    }
                }
            } else if now >= clock.end &+ limit {
                throw ToolError("the server did not take the last messages within \(timeout) of the end of the run")
            }
            if !quiet && now &- lastLine >= 1_000_000_000 {
                let count = all.reduce(0) { $0 + (mode == .oneWay ? $1.sentSoFar : $1.repliesSoFar) }
                Output.error(
                    BenchSummary.progress(
                        elapsed: Double(now &- (clock.start &- warmup.nanoseconds)) / 1e9,
                        rate: Double(count - lastCount) * 1e9 / Double(now &- lastLine), size: size.bytes,
                        phase: now < clock.start ? "warm-up" : now < clock.end ? "measuring" : "draining"))
                lastCount = count
                lastLine = now
            }
            usleep(20_000)
        }
        if let failure = run.failure { throw ToolError(failure) }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating (the tool's durations are small).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(clamping: seconds) &* 1_000_000_000 &+ UInt64(clamping: attoseconds / 1_000_000_000)
    }
}
