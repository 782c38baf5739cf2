import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Counts messages a server delivered to its application, from any thread.
public final class DeliveryCounter: @unchecked Sendable {
    private let lock = ConditionLock()
    private var count = 0  // guarded by lock

    public init() {}

    public func add(_ n: Int) { lock.withLock { count += n } }

    public var value: Int { lock.withLock { count } }
}

/// A client that pipelines numbered messages on a thread of its own, as
/// fast as the server takes them, and reads the echoes on the calling
/// thread: for proving that a server shutting down sends every reply it
/// owes, in order, before a clean end of stream.
public final class PipeliningProbe: @unchecked Sendable {
    /// What the client saw.
    public struct Outcome: Sendable {
        /// Echoes read, each the next number in order (`inOrder`).
        public var replies = 0
        public var inOrder = true
        /// Messages the writer got accepted before it stopped.
        public var sent = 0
        /// How the stream ended: nil for a clean end of stream.
        public var endError: TobyError?
    }

    private let messenger: TobyMessenger
    private let receiver: TobyReceiver
    private let size: Int
    private let lock = ConditionLock()
    private var stopFlag = false  // guarded by lock

    public init(port: Int, payloadSize: Int = 64) throws {
        messenger = try TobyMessenger.connect(host: "127.0.0.1", port: port)
        receiver = try messenger.start()
        size = max(payloadSize, 8)
    }

    private var stopped: Bool { lock.withLock { stopFlag } }

    private func stop() { lock.withLock { stopFlag = true } }

    /// Sends up to `count` messages (then ends its stream) while reading the
    /// echoes; once `threshold` echoes arrived, runs `trigger` on a thread of
    /// its own. Returns when the server ended the stream (or broke it), and
    /// `trigger` has returned.
    public func run(count: Int, triggerAfter threshold: Int, _ trigger: @escaping @Sendable () -> Void) throws -> Outcome {
        let size = self.size
        let messenger = self.messenger
        let sentBox = DeliveryCounter()
        let writer = try Threads.start {
            var payload = [UInt8](repeating: 0xa5, count: size)
            var i = 0
            while i < count && !self.stopped {
                withUnsafeBytes(of: UInt64(i).littleEndian) { payload.replaceSubrange(0..<8, with: $0) }
                do { try messenger.send(payload) } catch { break }
                i += 1
            }
            sentBox.add(i)
            if i == count { try? messenger.close() }
        }
        var outcome = Outcome()
        var triggerThread: Threads.Handle?
        do {
            while let message = try receiver.receive() {
                let number = message.count >= 8 ? message.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } : .max
                if UInt64(littleEndian: number) != UInt64(outcome.replies) || message.count != size { outcome.inOrder = false }
                outcome.replies += 1
                if outcome.replies == threshold { triggerThread = try Threads.start(trigger) }
            }
        } catch {
            outcome.endError = error
        }
        stop()
        try? messenger.close()
        writer.join()
        triggerThread?.join()
        receiver.close()
        outcome.sent = sentBox.value
        return outcome
    }
}
