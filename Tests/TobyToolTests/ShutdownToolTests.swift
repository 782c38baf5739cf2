import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `toby echo` on SIGTERM, from outside, with every `--api`: 50 clients
/// pipelining 256 KiB frames. Within the grace period every client is served
/// to its end; when the grace period runs out, every client still gets each
/// echo in order and then a clean end of stream, never a reset.
final class ShutdownToolTests: XCTestCase {
    private static let frameSize = 256 << 10
    private static let clients = 50

    /// One client: a writer thread sends frames (`count`, or until told to
    /// stop), the reader checks each echo and records how the stream ended.
    final class Client: @unchecked Sendable {
        let id: Int
        let socket: RawSocket
        private let lock = NSCondition()
        private var stopWriting = false
        private(set) var echoes = 0
        private(set) var sent = 0
        private(set) var corrupted = false
        /// 0 for a clean end of stream, else the errno the read failed with.
        private(set) var endErrno: Int32 = -1
        private(set) var done = false

        init(id: Int, port: Int) throws {
            self.id = id
            socket = try RawSocket(port: port)
        }

        static func frame(client: Int, sequence: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: client &* 31 &+ sequence), count: 8 + frameSize)
            withUnsafeBytes(of: UInt64(frameSize).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            withUnsafeBytes(of: UInt64(client).littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
            withUnsafeBytes(of: UInt64(sequence).littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
            return bytes
        }

        /// Whether `bytes` is `frame(client:sequence:)`, checked at memcmp speed
        /// (the fill is one byte value: the payload equals itself shifted by one).
        static func isFrame(_ bytes: [UInt8], client: Int, sequence: Int) -> Bool {
            let header = Client.header(client: client, sequence: sequence)
            let fill = UInt8(truncatingIfNeeded: client &* 31 &+ sequence)
            return bytes.withUnsafeBytes { raw in
                guard raw.count == 8 + frameSize, memcmp(raw.baseAddress!, header, 24) == 0, raw[24] == fill else { return false }
                return memcmp(raw.baseAddress! + 24, raw.baseAddress! + 25, raw.count - 25) == 0
            }
        }

        static func header(client: Int, sequence: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            for value in [UInt64(frameSize), UInt64(client), UInt64(sequence)] {
                withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
            }
            return bytes
        }

        var echoCount: Int { lock.lock(); defer { lock.unlock() }; return echoes }

        func start(count: Int?) {
            Thread { self.write(count: count) }.start()
            Thread { self.read() }.start()
        }

        private func write(count: Int?) {
            var sequence = 0
            while count.map({ sequence < $0 }) ?? true {
                lock.lock()
                let stop = stopWriting
                lock.unlock()
                if stop { break }
                let bytes = Client.frame(client: id, sequence: sequence)
                var offset = 0
                while offset < bytes.count {
                    let n = bytes[offset...].withUnsafeBytes { send(socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { return }  // the server ended: it reset, or we stopped
                    offset += n
                }
                sequence += 1
                lock.lock()
                sent = sequence
                lock.unlock()
            }
            if count != nil { socket.shutdownWrite() }
        }

        private func read() {
            var buffer = [UInt8](repeating: 0, count: 8 + frameSize)
            var code: Int32 = 0
            reading: while true {
                var filled = 0
                while filled < buffer.count {
                    let n = buffer[filled...].withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, 0) }
                    if n > 0 {
                        filled += n
                        continue
                    }
                    if n < 0 && errno == EINTR { continue }
                    code = n == 0 ? (filled == 0 ? 0 : -2) : errno  // -2: ended inside a frame
                    break reading
                }
                lock.lock()
                if !Client.isFrame(buffer, client: id, sequence: echoes) { corrupted = true }
                echoes += 1
                lock.unlock()
            }
            lock.lock()
            endErrno = code
            stopWriting = true
            done = true
            lock.broadcast()
            lock.unlock()
        }

        /// Waits until the reader saw the end (at most `seconds`).
        func waitUntilDone(seconds: Double) -> Bool {
            let deadline = Date(timeIntervalSinceNow: seconds)
            lock.lock()
            defer { lock.unlock() }
            while !done {
                if !lock.wait(until: deadline) { return done }
            }
            return true
        }
    }

    private func startServer(_ arguments: [String]) throws -> (ToolProcess, Int) {
        let server = try ToolProcess(["echo", "--port", "0"] + arguments)
        addTeardownBlock { server.kill() }
        return (server, try server.listeningPort())
    }

    private func waitForEchoes(_ clients: [Client], atLeast count: Int) throws {
        let deadline = Date(timeIntervalSinceNow: 60)
        while clients.contains(where: { $0.echoCount < count }) {
            guard Date() < deadline else { throw ToolTestError("clients were not served within 60 s") }
            _ = clients.first { $0.echoCount < count }?.socket.isReadable(within: 1)
            usleep(1000)  // polling the clients' progress, not synchronisation
        }
    }

    /// Clients that end within the grace period are served to their end.
    func testSigtermServesOpenConnectionsToTheirEndWithinTheGracePeriod() throws {
        let perClient = 6
        for api in ["handler", "async", "blocking"] {
            let (server, port) = try startServer(["--api", api, "--grace", "60s"])
            let clients = try (0..<Self.clients).map { try Client(id: $0, port: port) }
            for client in clients { client.start(count: perClient) }
            try waitForEchoes(clients, atLeast: 1)
            let signalled = Date()
            server.signal(SIGTERM)
            for client in clients {
                XCTAssertTrue(client.waitUntilDone(seconds: 60), "\(api): client \(client.id) ended")
                XCTAssertEqual(client.echoes, perClient, "\(api): client \(client.id) got every echo")
                XCTAssertFalse(client.corrupted, "\(api): client \(client.id)")
                XCTAssertEqual(client.endErrno, 0, "\(api): client \(client.id) saw a clean end of stream")
            }
            let exit = try server.waitForExit()
            XCTAssertEqual(exit.status, 0, api)
            XCTAssertLessThan(Date().timeIntervalSince(signalled), 50, "\(api): exited once its clients ended")
        }
    }

    /// Clients that never end: when the grace period runs out, each gets
    /// every echo the server owes it, in order, then a clean end of stream.
    func testSigtermPastTheGracePeriodEndsEveryStreamCleanly() throws {
        for api in ["handler", "async", "blocking"] {
            // A long linger: under load a slow client may need more than the
            // default 2 s to read what it is owed; this test is about a clean
            // end, not about the reset that ends a linger.
            let (server, port) = try startServer(["--api", api, "--grace", "200ms", "--linger", "30s"])
            let clients = try (0..<Self.clients).map { try Client(id: $0, port: port) }
            for client in clients { client.start(count: nil) }
            try waitForEchoes(clients, atLeast: 2)
            server.signal(SIGTERM)
            for client in clients {
                XCTAssertTrue(client.waitUntilDone(seconds: 30), "\(api): client \(client.id) ended")
                XCTAssertFalse(client.corrupted, "\(api): client \(client.id): echoes in order and intact")
                XCTAssertEqual(client.endErrno, 0, "\(api): client \(client.id): a clean end of stream, not a reset")
                XCTAssertGreaterThanOrEqual(client.echoes, 2)
                // It stops writing once it saw the end, then closes: the
                // server's linger ends with our end of stream.
                client.socket.shutdownWrite()
            }
            let exit = try server.waitForExit()
            XCTAssertEqual(exit.status, 0, api)
        }
    }
}
