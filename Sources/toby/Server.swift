import ArgumentParser
import TobyTCP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Threads, signals and the accept loop shared by `echo` and `listen`.
enum Server {
    /// Runs a server until SIGINT or SIGTERM: binds, prints
    /// `listening on ADDRESS`, then accepts connections, each served by
    /// `handle` on a thread of its own. On a signal it closes the listener
    /// (which removes a Unix socket file) and exits with status 0.
    /// `timeouts.readTimeout` bounds every receive of the accepted messengers.
    ///
    /// On the signal it stops accepting, goes on serving the open
    /// connections for up to `timeouts.grace`, then shuts down those left
    /// (``TobyMessenger/shutdown(linger:)``: no more messages delivered,
    /// every reply owed sent, the stream ended, the peer's end awaited for
    /// up to `timeouts.linger`), as the event-loop servers do.
    static func run(
        endpoint: EndpointOptions, framing: FramingOptions, timeouts: ServerTimeoutOptions,
        handle: @escaping @Sendable (TobyMessenger) -> Void
    ) throws -> Never {
        let linger = timeouts.linger
        // Handlers first, so a signal sent as soon as the line is read is ours.
        let signals = try SignalPipe(catching: [SIGINT, SIGTERM])
        IdleMemory.limitArenas()
        let listener: TobyListener
        do {
            listener = try endpoint.listen(configuration: try framing.configuration(readTimeout: timeouts.readTimeout))
        } catch {
            Output.error(error.description)
            throw ExitCode.failure
        }
        Output.line("listening on \(listener.address)")
        let live = LiveConnections()
        let shortage = AcceptShortage()

        try Threads.spawn(stackSize: connectionStack) {
            while true {
                let messenger: TobyMessenger
                do throws(TobyError) {
                    messenger = try listener.accept()
                } catch .closed {
                    return
                } catch {
                    // EMFILE and friends: said once; the listener pauses
                    // before its next accept, and the client stays queued.
                    shortage.failed(error)
                    continue
                }
                shortage.accepted(on: listener.address)
                live.add(messenger)
                do {
                    try Threads.spawn(stackSize: connectionStack) {
                        handle(messenger)
                        live.remove(messenger)
                    }
                } catch {
                    Output.error("\(messenger.peer): \(error)")
                    live.remove(messenger)
                }
            }
        }
        IdleMemory.trimWhenIdle { live.count }

        signals.wait()
        listener.close()
        if !live.waitUntilEmpty(for: timeouts.grace) {
            for messenger in live.all {
                try? Threads.spawn(stackSize: connectionStack) { messenger.shutdown(linger: linger) }
            }
            _ = live.waitUntilEmpty(for: linger + .seconds(1))
        }
        exit(0)
    }
}

extension Server {
    /// Runs a ``TobyServer`` on event loops until SIGINT or SIGTERM: prints
    /// `listening on ADDRESS`, serves, then stops listening (removing a Unix
    /// socket file) and exits with status 0. `timeouts.readTimeout` is the
    /// longest a connection may go without completing a message.
    static func runOnLoops(
        endpoint: EndpointOptions, framing: FramingOptions, timeouts: ServerTimeoutOptions, threads: Int?,
        stats: Duration? = nil, handler: @escaping @Sendable (TobyConnection) -> any TobyServerHandler
    ) throws -> Never {
        try runOnLoops(endpoint: endpoint, framing: framing, timeouts: timeouts, threads: threads, stats: stats) {
            configuration, options, group throws(TobyError) in
            if let unixPath = endpoint.unixPath {
                return try TobyServer.listen(
                    unixPath: unixPath, configuration: configuration, options: options, group: group, handler: handler)
            }
            return try TobyServer.listen(
                host: endpoint.host ?? "127.0.0.1", port: endpoint.port ?? 0,
                configuration: configuration, options: options, group: group, handler: handler)
        }
    }

    /// As above, serving each connection with an async task on its loop.
    static func runOnLoops(
        endpoint: EndpointOptions, framing: FramingOptions, timeouts: ServerTimeoutOptions, threads: Int?,
        stats: Duration? = nil, serve body: @escaping @Sendable (TobyAsyncConnection) async throws -> Void
    ) throws -> Never {
        try runOnLoops(endpoint: endpoint, framing: framing, timeouts: timeouts, threads: threads, stats: stats) {
            configuration, options, group throws(TobyError) in
            if let unixPath = endpoint.unixPath {
                return try TobyServer.serve(
                    unixPath: unixPath, configuration: configuration, options: options, group: group, body)
            }
            return try TobyServer.serve(
                host: endpoint.host ?? "127.0.0.1", port: endpoint.port ?? 0,
                configuration: configuration, options: options, group: group, body)
        }
    }

    private static func runOnLoops(
        endpoint: EndpointOptions, framing: FramingOptions, timeouts: ServerTimeoutOptions, threads: Int?,
        stats: Duration?,
        start: (TobyConfiguration, TobyServer.Options, TobyEventLoopGroup) throws(TobyError) -> TobyServer
    ) throws -> Never {
        let signals = try SignalPipe(catching: [SIGINT, SIGTERM])
        IdleMemory.limitArenas()
        let server: TobyServer
        do {
            let configuration = try framing.configuration(readTimeout: timeouts.readTimeout)
            let group = try TobyEventLoopGroup(threads: threads ?? TobyEventLoopGroup.coreCount)
            var options = TobyServer.Options(shutdownLinger: timeouts.linger)
            options.observer = AcceptShortage()
            server = try start(configuration, options, group)
        } catch {
            Output.error(error.description)
            throw ExitCode.failure
        }
        Output.line("listening on \(server.address)")
        IdleMemory.trimWhenIdle { server.connectionCount }
        if let stats { StatsLine.start(every: stats, server: server) }
        signals.wait()
        // Stop accepting, serve for up to `grace`, then stop delivering,
        // send what is owed, end each stream and linger (TobyServer.close).
        server.close(gracePeriod: timeouts.grace)
        exit(0)
    }
}

/// The blocking server's open connections, for its shutdown.
final class LiveConnections: @unchecked Sendable {
    private let lock = ConditionLock()  // the library's, as its Threads are
    private var messengers: [ObjectIdentifier: TobyMessenger] = [:]  // guarded by lock

    func add(_ messenger: TobyMessenger) {
        lock.withLock { messengers[ObjectIdentifier(messenger)] = messenger }
    }

    func remove(_ messenger: TobyMessenger) {
        lock.withLock {
            messengers[ObjectIdentifier(messenger)] = nil
            if messengers.isEmpty { lock.broadcast() }
        }
    }

    var count: Int { lock.withLock { messengers.count } }

    var all: [TobyMessenger] { lock.withLock { Array(messengers.values) } }

    /// Waits until no connection is left, at most `duration`; whether none is.
    func waitUntilEmpty(for duration: Duration) -> Bool {
        let deadline = monotonicNanoseconds() &+ UInt64(duration / .nanoseconds(1))
        return lock.withLock {
            while !messengers.isEmpty {
                if !lock.wait(untilMonotonicNanoseconds: deadline) { return messengers.isEmpty }
            }
            return true
        }
    }
}

/// Gives the memory a load left behind back to the kernel once the server
/// is idle. glibc keeps what its arenas freed (frames of up to `--max-frame`
/// bytes), so without this an idle server would keep its peak: once the
/// last connection ended, `malloc_trim` returns the free pages of every
/// arena. It cannot shrink the top of a thread's own arena, of which glibc
/// makes up to 8 per core for a thread per connection (`--api blocking`
/// kept 83 MiB after a soak that started at 13), so the arenas are limited
/// to one per core: as many as can run at once. Checked once a second,
/// trimmed once per idle spell: nothing while connections are open.
enum IdleMemory {
    /// glibc's `malloc_trim` and `mallopt` (in `<malloc.h>`, which the Glibc
    /// module does not export).
    private typealias Trim = @convention(c) (Int) -> Int32
    private typealias Option = @convention(c) (Int32, Int32) -> Int32
    private static let arenaMax: Int32 = -8  // M_ARENA_MAX

    private static var library: UnsafeMutableRawPointer? { nil }  // RTLD_DEFAULT

    /// At start, before the server's threads: one arena per core.
    static func limitArenas() {
        guard let symbol = dlsym(library, "mallopt") else { return }
        _ = unsafeBitCast(symbol, to: Option.self)(arenaMax, Int32(clamping: TobyEventLoopGroup.coreCount))
    }

    static func trimWhenIdle(connections: @escaping @Sendable () -> Int) {
        guard let symbol = dlsym(library, "malloc_trim") else { return }
        let trim = unsafeBitCast(symbol, to: Trim.self)
        try? Threads.spawn(stackSize: connectionStack) {
            var busySinceTrim = false
            while true {
                sleep(1)
                if connections() > 0 {
                    busySinceTrim = true
                } else if busySinceTrim {
                    busySinceTrim = false
                    _ = trim(0)
                }
            }
        }
    }
}

/// A connection thread needs little stack: 512 KiB instead of the usual
/// 8 MiB keeps thousands of connections cheap in address space. (The
/// threads are the library's `Threads`, shared with the benchmarks.)
let connectionStack = 512 << 10

/// A self-pipe: the signal handler writes the signal number into it, and
/// ``wait()`` reads it on an ordinary thread, where closing and exiting are
/// safe. Works whichever thread the kernel picks to run the handler.
struct SignalPipe {
    private let readEnd: Int32

    init(catching signals: [Int32]) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw ToolError("cannot create the signal pipe: \(String(cString: strerror(errno)))")
        }
        readEnd = fds[0]
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        signalPipeWriteEnd = fds[1]
        for signal in signals {
            _ = Glibc.signal(
                signal,
                { number in
                    var byte = UInt8(truncatingIfNeeded: number)
                    _ = write(signalPipeWriteEnd, &byte, 1)
                })
        }
    }

    /// Blocks until one of the signals arrives.
    func wait() {
        var byte: UInt8 = 0
        while read(readEnd, &byte, 1) < 0 && errno == EINTR {}
    }
}

/// Written once, before the handlers are installed; then only read.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// A failure of the tool itself (not of a connection), shown as `toby: …`.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    /// Runs a command's body; an error from the library or the tool is one
    /// line on stderr and exit status 1 (others go to the argument parser).
    static func exitingOnFailure(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as TobyError {
            Output.error(error.description)
            throw ExitCode.failure
        } catch let error as ToolError {
            Output.error(error.description)
            throw ExitCode.failure
        }
    }
}
