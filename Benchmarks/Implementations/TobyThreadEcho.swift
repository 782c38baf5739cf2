import TobyTCP

/// The thread-per-connection server of `toby echo --api blocking`: a
/// `TobyListener` accepting on its own thread, and one thread per
/// connection echoing with the blocking `TobyMessenger`/`TobyReceiver`
/// (the first message borrowed and sent straight from the ring, the rest of
/// the read drained with `tryReceive()` and sent with one
/// `send(contentsOf:)`). The before of the event loop.
final class TobyThreadEcho: EchoServer, @unchecked Sendable {
    /// The threads and the count of connections being served.
    final class State: @unchecked Sendable {
        let lock = Lock()
        var workers: [Worker] = []
        var open = 0
    }

    let listener: TobyListener
    private let state = State()
    private var acceptor: Worker?

    init() throws {
        listener = try TobyListener(host: "127.0.0.1", port: 0)
        let listener = self.listener, state = self.state
        acceptor = Worker {
            while let messenger = try? listener.accept() {
                let worker = Worker {
                    state.lock.withLock { state.open += 1 }
                    TobyThreadEcho.echo(messenger)
                    state.lock.withLock { state.open -= 1 }
                }
                state.lock.withLock { state.workers.append(worker) }
            }
        }
    }

    var port: Int { listener.port }
    var accepted: Int { state.lock.withLock { state.open } }

    /// Stops accepting and joins every thread; connections end when their
    /// clients close them.
    func stop() {
        listener.close()
        acceptor?.join()
        for worker in state.lock.withLock({ state.workers }) { worker.join() }
    }

    static let batchFrames = 512
    static let batchBytes = 1 << 20

    /// `EchoCommand.echo` of the `toby` tool, condensed.
    static func echo(_ messenger: TobyMessenger) {
        guard let receiver = try? messenger.start() else { return }
        var batch: [[UInt8]] = []
        var skipDrain = 0
        do {
            while true {
                guard try receiver.receive({ bytes in try messenger.send(bytes) }) != nil else { break }
                if skipDrain > 0 {
                    skipDrain -= 1
                    continue
                }
                var ended = false
                var bytes = 0
                do {
                    while batch.count < batchFrames, bytes < batchBytes, let message = try receiver.tryReceive() {
                        bytes += message.count
                        batch.append(message)
                    }
                } catch .endOfStream {
                    ended = true
                }
                if batch.isEmpty {
                    skipDrain = 8
                } else {
                    try messenger.send(contentsOf: batch)
                    batch.removeAll(keepingCapacity: true)
                }
                if ended { break }
            }
        } catch {
            // A broken connection: the client reports what it missed.
        }
        try? messenger.close()
        receiver.close()
    }
}
