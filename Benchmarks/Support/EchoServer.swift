#if canImport(Glibc)
import Glibc
#endif

/// An echo server under test, running in this process on threads of its
/// own, listening on 127.0.0.1 and an ephemeral port.
protocol EchoServer: AnyObject {
    var port: Int { get }
    /// Connections it has accepted and set up that are still open.
    var accepted: Int { get }
    /// Closes the listener and every connection and waits for its threads.
    func stop()
}

/// One run of an echo-server scenario, the same for every server.
enum EchoBench {
    static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Starts a server, opens `connections` raw-socket connections to it and
    /// waits until it has accepted them all, then counts the server's
    /// threads (/proc/self/task now minus before the server started) and,
    /// with `idleMemory`, the resident memory the idle connections added
    /// (/proc/self/statm, after `malloc_trim` so freed pages of earlier rows
    /// are not reused unseen), divided by their number. Then every
    /// connection echoes `messages` frames of 64 B with `window` in flight
    /// (`EchoClient`), all bytes checked. The clock runs from the release of
    /// the client threads to the last byte back. Also reports the messages
    /// per client `recv`: how many echoes the server's writes carried.
    static func run(
        connections: Int, messages: Int, window: Int, clientThreads: Int, idleMemory: Bool,
        timeout: Double, start: () throws -> any EchoServer
    ) throws -> Sample {
        ProcessStats.trimHeap()
        let threadsBefore = ProcessStats.settledThreads()
        let server = try start()
        var fds: [Int32] = []
        // Clients first: the servers' connections then end with end-of-stream.
        defer {
            EchoClient.close(fds)
            server.stop()
        }
        ProcessStats.trimHeap()
        let residentBefore = ProcessStats.residentBytes()
        fds = try EchoClient.connect(connections, port: server.port, accepted: { server.accepted }, timeout: timeout)
        usleep(50_000)  // let the loops finish registering the last ones
        let residentIdle = ProcessStats.residentBytes()
        let threadsIdle = ProcessStats.threads()
        let (nanoseconds, reads) = try EchoClient.run(
            fds: fds, threads: clientThreads, messages: messages, window: window, timeout: timeout)
        var sample = Sample.throughput(messages: connections * messages, size: EchoClient.payloadSize, nanoseconds: nanoseconds)
        sample.metrics["echoes_per_client_read"] = Double(connections * messages) / Double(max(1, reads))
        sample.metrics["server_threads"] = Double(threadsIdle - threadsBefore)
        if idleMemory {
            sample.metrics["idle_kib_per_connection"] = Double(residentIdle - residentBefore) / Double(connections) / 1024
        }
        return sample
    }
}
