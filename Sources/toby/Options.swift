import ArgumentParser
import TobyTCP

/// `--byte-order little|big`.
enum ByteOrderArgument: String, ExpressibleByArgument, CaseIterable, Sendable {
    case little
    case big

    var byteOrder: TobyConfiguration.ByteOrder {
        self == .little ? .littleEndian : .bigEndian
    }
}

/// A byte count such as `1048576`, `64K`, `16MiB` or `1G` (powers of 1024).
struct ByteCount: ExpressibleByArgument, Sendable {
    let bytes: Int

    init(bytes: Int) {
        self.bytes = bytes
    }

    init?(argument: String) {
        var text = Substring(argument.lowercased())
        for suffix in ["ib", "b"] where text.hasSuffix(suffix) {
            text = text.dropLast(suffix.count)
            break
        }
        var shift = 0
        switch text.last {
        case "k": shift = 10
        case "m": shift = 20
        case "g": shift = 30
        default: break
        }
        if shift > 0 { text = text.dropLast() }
        guard let value = Int(text), value >= 0, value <= Int.max >> shift else { return nil }
        bytes = value << shift
    }

    var defaultValueDescription: String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20)MiB" : "\(bytes)"
    }
}

/// Where to listen or connect: `--port P [--host H]` or `--unix PATH`.
struct EndpointOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "TCP port. For echo and listen, 0 picks a free port (the real one is printed).",
            valueName: "port"))
    var port: Int?

    @Option(
        help: ArgumentHelp(
            "Host name or IP address (default 127.0.0.1). Servers: 0.0.0.0 or :: for every interface.",
            valueName: "host"))
    var host: String?

    @Option(
        name: .customLong("unix"),
        help: ArgumentHelp(
            "Use the Unix domain socket at this path instead of TCP.", valueName: "path"))
    var unixPath: String?

    func validate() throws {
        switch (port, unixPath) {
        case (nil, nil):
            throw ValidationError("Give a TCP port (--port) or a Unix socket path (--unix).")
        case (.some, .some):
            throw ValidationError("--port and --unix cannot be used together.")
        default:
            break
        }
        if unixPath != nil, host != nil {
            throw ValidationError("--host applies to TCP only; it cannot be used with --unix.")
        }
        if let port, !(0...65535).contains(port) {
            throw ValidationError("--port must be in 0...65535 (got \(port)).")
        }
    }

    /// Binds a listener (echo, listen).
    func listen(configuration: TobyConfiguration) throws(TobyError) -> TobyListener {
        if let unixPath {
            return try TobyListener(unixPath: unixPath, configuration: configuration)
        }
        return try TobyListener(host: host ?? "127.0.0.1", port: port ?? 0, configuration: configuration)
    }

    /// Connects a messenger (send).
    func connect(configuration: TobyConfiguration) throws(TobyError) -> TobyMessenger {
        if let unixPath {
            return try TobyMessenger.connect(unixPath: unixPath, configuration: configuration)
        }
        return try TobyMessenger.connect(host: host ?? "127.0.0.1", port: port ?? 0, configuration: configuration)
    }
}

/// `--byte-order` and `--max-frame`: the wire settings both ends must share.
struct FramingOptions: ParsableArguments {
    @Option(
        name: .customLong("byte-order"),
        help: ArgumentHelp(
            "Byte order of the 8-byte length prefix: little (TobyTcp default) or big (the Rust tobytcp crate). Both ends must agree.",
            valueName: "order"))
    var byteOrder: ByteOrderArgument = .little

    @Option(
        name: .customLong("max-frame"),
        help: ArgumentHelp(
            "Largest message accepted or sent, in bytes (suffixes K, M, G allowed). A peer announcing more is disconnected.",
            valueName: "bytes"))
    var maxFrame: ByteCount = ByteCount(bytes: 64 << 20)

    func configuration(readTimeout: Duration? = nil) throws(TobyError) -> TobyConfiguration {
        try TobyConfiguration(
            byteOrder: byteOrder.byteOrder, maxFrameLength: maxFrame.bytes, readTimeout: readTimeout)
    }
}

/// `--read-timeout`: how long a server lets a connection go without a
/// complete message (echo, listen).
struct ServerTimeoutOptions: ParsableArguments {
    @Option(
        name: .customLong("read-timeout"),
        help: ArgumentHelp(
            "Drop a connection that completes no message for this long: a number and a unit (500ms, 2s, 1.5s, 1m). Default: never.",
            valueName: "duration"),
        transform: DurationArgument.parse)
    var readTimeout: Duration?

    @Option(
        help: ArgumentHelp(
            "On SIGINT or SIGTERM: stop accepting, go on serving open connections for up to this long, then end the ones left without losing a reply they are owed (0: at once).",
            valueName: "duration"),
        transform: DurationArgument.parseAllowingZero)
    var grace: Duration = .seconds(5)

    @Option(
        help: ArgumentHelp(
            "On shutdown, once the grace period is over: how long a connection may take to send what it owes and see its peer's end before it is reset.",
            valueName: "duration"),
        transform: DurationArgument.parse)
    var linger: Duration = .seconds(2)
}
