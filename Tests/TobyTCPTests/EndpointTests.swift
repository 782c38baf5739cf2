import CTobyFrame
import Foundation
import Glibc
import XCTest

@testable import TobyTCP

/// Every API opens its sockets through `Endpoint`: the same checks and the
/// same error text for the same mistake, whichever API made it.
final class EndpointTests: XCTestCase {
    private func error(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testAddressesAreNamedOneWay() throws {
        XCTAssertEqual(try Endpoint.tcp(host: "127.0.0.1", port: 80).description, "127.0.0.1:80")
        XCTAssertEqual(try Endpoint.tcp(host: "::1", port: 0).description, "[::1]:0")
        XCTAssertEqual(try Endpoint.unixSocket("/tmp/x.sock").description, "unix:/tmp/x.sock")
        XCTAssertEqual(TobyMessenger.describe(host: "fe80::1", port: 9), "[fe80::1]:9")
    }

    func testEveryAPIRefusesAPortOutOfRange() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        for port in [-1, 65536] {
            let expected = "\(TobyError.invalidConfiguration("port must be in 0...65535 (got \(port))"))"
            let errors = [
                await error { _ = try TobyListener(port: port) },
                await error { _ = try TobyServer.listen(port: port, group: group) { _ in EchoHandler() } },
                await error { _ = try TobyMessenger.connect(host: "127.0.0.1", port: port) },
                await error { _ = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: port, group: group) },
            ]
            XCTAssertEqual(errors, Array(repeating: expected, count: 4), "port \(port)")
        }
    }

    func testEveryAPIRefusesAnEmptyOrTooLongUnixPath() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let long = "/tmp/" + String(repeating: "p", count: 200)
        for path in ["", long] {
            let errors = [
                await error { _ = try TobyListener(unixPath: path) },
                await error { _ = try TobyServer.listen(unixPath: path, group: group) { _ in EchoHandler() } },
                await error { _ = try TobyMessenger.connect(unixPath: path) },
                await error { _ = try await TobyAsyncConnection.connect(unixPath: path, group: group) },
            ]
            let first = try XCTUnwrap(errors[0])
            XCTAssertTrue(first.contains(path.isEmpty ? "empty" : "\(long.utf8.count)"), first)
            XCTAssertEqual(Set(errors), [first], "every API says the same: \(errors)")
        }
    }

    func testAnAddressInUseReadsTheSameOnBothListeningAPIs() async throws {
        let taken = try TobyListener(port: 0)
        defer { taken.close() }
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let expected = "'bind/listen' on 127.0.0.1:\(taken.port) failed with '(98) Address already in use'"
        let listener = await error { _ = try TobyListener(port: taken.port) }
        let server = await error { _ = try TobyServer.listen(port: taken.port, group: group) { _ in EchoHandler() } }
        XCTAssertEqual(listener, expected)
        XCTAssertEqual(server, expected)
    }

    func testARefusedConnectReadsTheSameOnBothClients() async throws {
        // A Unix socket path that exists but nobody listens on: refused at once, and
        // no port another process could take in between.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("toby-endpoint-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("gone.sock").path
        // Bound but not listening: what a stopped server's socket file amounts to.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let expected = "'connect' to unix:\(path) failed with '(111) Connection refused'"
        let blocking = await error { _ = try TobyMessenger.connect(unixPath: path) }
        let async = await error { _ = try await TobyAsyncConnection.connect(unixPath: path, group: group) }
        XCTAssertEqual(blocking, expected)
        XCTAssertEqual(async, expected)
    }
}
