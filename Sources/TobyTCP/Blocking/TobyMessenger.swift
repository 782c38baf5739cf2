import CTobyFrame

#if canImport(Glibc)
import Glibc
#endif

/// One TobyTcp connection: send whole messages, and receive them through the
/// ``TobyReceiver`` that ``start()`` returns.
///
/// ```swift
/// let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: 15235)
/// let receiver = try messenger.start()
/// try messenger.send("toby is a good dog")
/// let reply = try receiver.receive()
/// try messenger.close()
/// ```
///
/// A messenger is `Sendable`: any number of threads may send through it at
/// once, with no lock of their own. Frames never interleave, each thread's
/// messages keep their order, and when threads contend their frames are
/// combined into shared `sendmsg` calls instead of one syscall each.
///
/// `send` returns once the message is *accepted*: either written to the
/// kernel by this thread, or queued behind a write in progress on another
/// thread, which will write it before giving up the socket. As with
/// `write(2)`, acceptance is not delivery; if the connection fails, every
/// later call throws the error. ``flush()`` waits until everything accepted
/// is in the kernel, and ``close()`` sends everything accepted before it
/// shuts the connection's write side.
public final class TobyMessenger: Sendable {
    /// The configuration of the connection.
    public let configuration: TobyConfiguration

    /// The peer's address as text: `"127.0.0.1:5000"`, `"[::1]:5000"`,
    /// `"unix:/path"` (for an accepted Unix connection `"unix:/path (pid 42)"`,
    /// since all its peers share the path), or `"fd N"` for a socket handed
    /// to ``init(socket:configuration:)``.
    public let peer: String

    let socket: SocketHandle
    private let sender: FrameSender
    private let startLock = ConditionLock()
    nonisolated(unsafe) private var started = false  // guarded by startLock

    /// Wraps a connected stream socket, taking ownership of it (the crate's
    /// `TobyMessenger::new(stream)`): the descriptor is closed when the
    /// messenger and its receiver are both gone.
    ///
    /// - Parameters:
    ///   - socket: A connected `SOCK_STREAM` socket (TCP or Unix domain).
    ///   - configuration: Byte order, limits and buffer sizes.
    /// - Throws: ``TobyError/invalidConfiguration(_:)`` if `configuration`
    ///   is out of range or `socket` is not a stream socket (it is then left
    ///   open).
    public convenience init(socket: Int32, configuration: TobyConfiguration = .default) throws(TobyError) {
        try configuration.validate()
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &length) != 0 {
            throw .system(operation: "getsockopt(SO_TYPE)", errno: errno)
        }
        guard type == Int32(SOCK_STREAM.rawValue) else {
            throw .invalidConfiguration("descriptor \(socket) is not a stream socket")
        }
        self.init(owning: socket, peer: "fd \(socket)", configuration: configuration)
    }

    init(owning fd: Int32, peer: String, configuration: TobyConfiguration) {
        self.configuration = configuration
        self.peer = peer
        self.socket = SocketHandle(fd: fd)
        self.sender = FrameSender(socket: socket, configuration: configuration)
    }

    /// Connects over TCP, with `TCP_NODELAY` set.
    ///
    /// - Parameters:
    ///   - host: A name or a numeric IPv4/IPv6 address; each address it
    ///     resolves to is tried in turn.
    ///   - port: The TCP port.
    ///   - configuration: Byte order, limits and buffer sizes.
    ///   - observer: Told that the connect succeeded or failed (logging:
    ///     the `TobyTCPLogging` product); nil: nothing is told.
    /// - Throws: ``TobyError/systemAtAddress(operation:address:errno:)`` for
    ///   `connect` (for example `ECONNREFUSED`, printed as `'connect' to
    ///   127.0.0.1:9 failed with '(111) Connection refused'`),
    ///   ``TobyError/unresolvableHost(host:reason:)``,
    ///   ``TobyError/invalidConfiguration(_:)`` before connecting.
    public static func connect(
        host: String, port: Int, configuration: TobyConfiguration = .default,
        observer: (any TobyClientObserver)? = nil
    ) throws(TobyError) -> TobyMessenger {
        try configuration.validate()
        return try connect(Endpoint.tcp(host: host, port: port), configuration: configuration, observer: observer)
    }

    /// Connects to a Unix domain stream socket; `observer` as for TCP.
    ///
    /// - Throws: ``TobyError/unixPathTooLong(path:length:limit:)`` (the path
    ///   is never truncated), ``TobyError/systemAtAddress(operation:address:errno:)``,
    ///   or ``TobyError/invalidConfiguration(_:)`` before connecting.
    public static func connect(
        unixPath: String, configuration: TobyConfiguration = .default, observer: (any TobyClientObserver)? = nil
    ) throws(TobyError) -> TobyMessenger {
        try configuration.validate()
        return try connect(Endpoint.unixSocket(unixPath), configuration: configuration, observer: observer)
    }

    private static func connect(
        _ endpoint: Endpoint, configuration: TobyConfiguration, observer: (any TobyClientObserver)?
    ) throws(TobyError) -> TobyMessenger {
        try observed(endpoint.description, observer) { () throws(TobyError) in
            TobyMessenger(owning: try endpoint.connect(), peer: endpoint.description, configuration: configuration)
        }
    }

    /// Runs a connect and tells `observer` how it went.
    private static func observed(
        _ address: String, _ observer: (any TobyClientObserver)?,
        _ connect: () throws(TobyError) -> TobyMessenger
    ) throws(TobyError) -> TobyMessenger {
        guard let observer else { return try connect() }
        do {
            let messenger = try connect()
            observer.connected(
                TobyConnectionEvent(
                    id: ServerCore.clientConnectionID(), peer: messenger.peer, server: "", messagesReceived: 0,
                    messagesSent: 0, bytesReceived: 0, bytesSent: 0))
            return messenger
        } catch {
            observer.connectFailed(address: address, error: error)
            throw error
        }
    }

    static func describe(host: String, port: UInt16) -> String {
        Endpoint.tcp(host: host, port: port).description
    }

    /// What this connection has carried so far: messages its receiver
    /// delivered, messages this messenger accepted, bytes each way (prefixes
    /// included), bytes accepted that no writer has taken yet, and when the
    /// messenger was made.
    ///
    /// Readable from any thread at any time, without waiting for a receive
    /// or a send in progress. Each figure is exact when read; figures read
    /// together while traffic flows may be a message apart. Counting costs no
    /// lock or atomic read-modify-write of its own: every figure is updated
    /// by the thread that already holds the receive or send side.
    public var statistics: TobyConnection.Statistics {
        var figures = TobyConnection.Statistics()
        figures.messagesReceived = socket.messagesReceived.load(ordering: .relaxed)
        figures.bytesReceived = socket.bytesReceived.load(ordering: .relaxed)
        figures.messagesSent = socket.messagesSent.load(ordering: .relaxed)
        figures.bytesSent = socket.bytesSent.load(ordering: .relaxed)
        figures.queuedBytes = sender.pendingBytes
        figures.openedAt = socket.openedAt
        return figures
    }

    /// Returns the receiver of this connection's messages. Call it once.
    ///
    /// - Throws: ``TobyError/alreadyStarted`` on a second call (as the crate
    ///   does); ``TobyError/invalidConfiguration(_:)`` if the configuration is
    ///   out of range.
    public func start() throws(TobyError) -> TobyReceiver {
        try configuration.validate()
        try startLock.withLock { () throws(TobyError) in
            if started { throw TobyError.alreadyStarted }
            started = true
        }
        return TobyReceiver(socket: socket, configuration: configuration)
    }

    /// Sends one message.
    ///
    /// - Throws: ``TobyError/frameTooLarge(length:limit:prefix:)`` before any
    ///   byte is written if the message exceeds
    ///   ``TobyConfiguration/maxFrameLength``; ``TobyError/closed`` after
    ///   ``close()``; or the error that broke the connection (for example
    ///   `EPIPE` when the peer is gone; never a `SIGPIPE`).
    public func send(_ message: [UInt8]) throws(TobyError) {
        try sender.send(message)
    }

    /// Sends one message from a slice of bytes.
    public func send(_ message: ArraySlice<UInt8>) throws(TobyError) {
        try TobyMessenger.typed({ message.withUnsafeBytes($0) }, sender: sender)
    }

    /// Sends one message from raw memory. The bytes are written directly
    /// when no other thread is sending, and copied only if they must wait.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(TobyError) {
        try sender.send(bytes)
    }

    /// Sends a string as one message of its UTF-8 bytes.
    public func send(_ text: String) throws(TobyError) {
        var text = text
        try TobyMessenger.typed({ body in text.withUTF8 { body(UnsafeRawBufferPointer($0)) } }, sender: sender)
    }

    /// Sends any collection of bytes as one message.
    public func send<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(TobyError) {
        var failure: TobyError?
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            do throws(TobyError) { try sender.send(UnsafeRawBufferPointer(buffer)) } catch { failure = error }
        }
        if let failure { throw failure }
        if done == nil { try sender.send(Array(bytes)) }
    }

    /// Runs `access`, which lends raw bytes to the closure it is given, and
    /// sends those bytes; bridges untyped `rethrows` APIs to typed throws.
    private static func typed(
        _ access: ((UnsafeRawBufferPointer) -> Void) -> Void, sender: FrameSender
    ) throws(TobyError) {
        var failure: TobyError?
        access { bytes in
            do throws(TobyError) { try sender.send(bytes) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Sends a batch of messages, in order, in as few `sendmsg` calls as the
    /// kernel allows (up to 512 frames each). Every length is checked before
    /// any byte is written.
    ///
    /// - Throws: As ``send(_:)-([UInt8])``.
    public func send(contentsOf messages: [[UInt8]]) throws(TobyError) {
        try sender.send(contentsOf: messages)
    }

    /// Waits until every accepted message has been written to the kernel.
    ///
    /// - Throws: The error that broke the connection, if any.
    public func flush() throws(TobyError) {
        try sender.flush()
    }

    /// Closes the sending side gracefully: refuses new messages, writes
    /// every message already accepted, then shuts down the socket's write
    /// side so the peer sees a clean end of stream after the last one.
    ///
    /// The receiver keeps delivering what the peer still sends until the
    /// peer closes too (call ``TobyReceiver/close()`` to stop it early). The
    /// descriptor is released when the messenger and receiver are both gone.
    /// Calling `close()` again does nothing.
    ///
    /// - Throws: The error that broke the connection, if accepted messages
    ///   could not all be written.
    public func close() throws(TobyError) {
        try sender.close()
    }

    /// Ends the connection gracefully from a server's side while another
    /// thread may be serving it (receive, answer, receive…): what a server
    /// does to its connections when it stops.
    ///
    /// 1. The receiver delivers nothing more: its next receive (or the one
    ///    waiting now, once bytes arrive) returns the end of the stream.
    ///    What the peer still sends is read and discarded.
    /// 2. Once the serving thread owes nothing (it waits in a receive, or it
    ///    saw the end), everything accepted is sent and the write side is
    ///    shut down, so the peer reads every reply, then the end of stream.
    /// 3. Reading and discarding goes on until the peer ends too, or until
    ///    it has acknowledged everything and gone quiet, so that closing
    ///    sends no reset that would destroy replies in flight.
    ///
    /// So every message the receiver delivered has the replies its thread
    /// sent for it delivered before the end of stream. After `linger` the
    /// connection is reset instead (a peer still sending, or not reading).
    /// Blocks the calling thread for at most about `linger`; the descriptor
    /// is closed, as always, when the messenger and receiver are both gone.
    ///
    /// - Parameter linger: The longest the whole shutdown may take.
    public func shutdown(linger: Duration = .seconds(2)) {
        let deadline = monotonicNanoseconds() &+ linger.clampedNanoseconds
        socket.quiescing.store(true, ordering: .sequentiallyConsistent)
        let receiving = startLock.withLock { started }
        var discarded = 0
        var peerEnded = false
        // Until the serving thread owes nothing, discard what arrives: it
        // would not be delivered now anyway.
        while receiving && !socket.receiverParked.load(ordering: .sequentiallyConsistent)
            && !socket.receiverStopped.load(ordering: .sequentiallyConsistent)
        {
            if monotonicNanoseconds() >= deadline || peerEnded { break }
            peerEnded = discardInput(waitingMilliseconds: 1, count: &discarded)
        }
        var clean = false
        if monotonicNanoseconds() < deadline && sender.close(until: deadline) {
            // Linger: the peer's end, or everything acknowledged and silence.
            var interval: Int32 = 1
            while !peerEnded && monotonicNanoseconds() < deadline {
                let before = discarded
                peerEnded = discardInput(waitingMilliseconds: interval, count: &discarded)
                if peerEnded { break }
                if discarded == before && socket.unacknowledgedBytes == 0 {
                    clean = true
                    break
                }
                interval = min(interval * 2, 100)
            }
            clean = clean || peerEnded
        }
        if !clean {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(socket.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        // Wakes a receive still waiting (it then ends the stream) and a
        // send still blocked; nothing more goes either way.
        socket.shutdown(Int32(SHUT_RDWR))
    }

    /// Waits up to `waitingMilliseconds` for bytes and discards what is
    /// there, adding their count; true once the peer ended (or failed).
    private func discardInput(waitingMilliseconds: Int32, count: inout Int) -> Bool {
        var pfd = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, waitingMilliseconds)
        guard ready > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                count += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return false }
            return true  // 0: the peer's end; or an error: nothing more to read
        }
    }
}
