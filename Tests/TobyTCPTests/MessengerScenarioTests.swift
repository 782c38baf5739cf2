import Foundation
import XCTest

@testable import TobyTCP

/// The Rust crate's socket tests, as scenarios over loopback TCP.
final class MessengerScenarioTests: XCTestCase {
    func testSendOneMessage() throws {
        let (client, server) = try makeTCPPair()
        let receiver = try server.start()
        try client.send(Array("toby is a good dog".utf8))
        XCTAssertEqual(try receiver.receive(), Array("toby is a good dog".utf8))
    }

    func testEchoOneMessage() throws {
        let (client, server) = try makeTCPPair()
        let clientReceiver = try client.start()
        let serverReceiver = try server.start()
        try client.send("hello")
        let message = try XCTUnwrap(try serverReceiver.receive())
        try server.send(message)
        XCTAssertEqual(try clientReceiver.receive(), Array("hello".utf8))
    }

    func testEchoLoopOfHundredWithAppendedByte() throws {
        let (client, server) = try makeTCPPair()
        let clientReceiver = try client.start()
        let serverReceiver = try server.start()
        let echo = Thread {
            while let message = try! serverReceiver.receive() {
                try! server.send(message + [UInt8(message.count % 256)])
            }
            try! server.close()
        }
        echo.start()
        var message: [UInt8] = [0]
        for _ in 0..<100 {
            try client.send(message)
            let reply = try XCTUnwrap(try clientReceiver.receive())
            XCTAssertEqual(reply, message + [UInt8(message.count % 256)])
            message = reply
        }
        XCTAssertEqual(message.count, 101)
        try client.close()
        XCTAssertNil(try clientReceiver.receive())
    }

    func testHundredFiftyConcurrentConnectionsToOneListener() throws {
        let listener = try TobyListener(port: 0)
        defer { listener.close() }
        let port = listener.port
        let clients = Thread {
            DispatchQueue.concurrentPerform(iterations: 150) { index in
                let messenger = try! TobyMessenger.connect(host: "127.0.0.1", port: port)
                try! messenger.send("client \(index)")
                try! messenger.close()
            }
        }
        clients.start()
        var seen = Set<String>()
        for _ in 0..<150 {
            let server = try listener.accept()
            let receiver = try server.start()
            let message = try XCTUnwrap(try receiver.receive())
            seen.insert(String(decoding: message, as: UTF8.self))
            XCTAssertNil(try receiver.receive())
        }
        XCTAssertEqual(seen, Set((0..<150).map { "client \($0)" }))
    }

    func testSecondStartThrows() throws {
        let (client, _) = try makeTCPPair()
        _ = try client.start()
        XCTAssertThrowsError(try client.start()) { XCTAssertEqual($0 as? TobyError, .alreadyStarted) }
    }

    func testSendAfterCloseThrowsClosed() throws {
        let (client, _) = try makeTCPPair()
        try client.close()
        try client.close()  // idempotent
        XCTAssertThrowsError(try client.send([1])) { XCTAssertEqual($0 as? TobyError, .closed) }
    }

    func testUnixSocketRoundTrip() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "toby-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        ).path
        let listener = try TobyListener(unixPath: path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let client = try TobyMessenger.connect(unixPath: path)
        let server = try listener.accept()
        let serverReceiver = try server.start()
        let clientReceiver = try client.start()
        try client.send(contentsOf: [[1, 2], [3]])
        XCTAssertEqual(try serverReceiver.receive(), [1, 2])
        XCTAssertEqual(try serverReceiver.receive(), [3])
        try server.send([4])
        XCTAssertEqual(try clientReceiver.receive(), [4])
        XCTAssertEqual(server.peer, "unix:\(path) (pid \(getpid()))")
        XCTAssertEqual(client.peer, "unix:\(path)")
        listener.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the listener removes its socket file")
    }

    func testUnixPathTooLongIsAnErrorNotATruncation() {
        let path = "/tmp/" + String(repeating: "x", count: 200)
        XCTAssertThrowsError(try TobyListener(unixPath: path)) { error in
            XCTAssertEqual(error as? TobyError, .unixPathTooLong(path: path, length: 205, limit: 107))
        }
        XCTAssertThrowsError(try TobyMessenger.connect(unixPath: path)) { error in
            guard case TobyError.unixPathTooLong = error else { return XCTFail("\(error)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: String(path.prefix(107))))
    }

    func testListenerCloseWakesAccept() throws {
        let listener = try TobyListener(port: 0)
        let result = ResultBox()
        let acceptor = Thread {
            do { _ = try listener.accept() } catch { result.set(error as? TobyError) }
        }
        acceptor.start()
        // accept() may not have started yet; close() must work either way.
        listener.close()
        XCTAssertEqual(result.wait(), .closed)
    }

    func testConnectionRefusedIsASystemError() throws {
        let listener = try TobyListener(port: 0)
        let port = listener.port
        listener.close()
        XCTAssertThrowsError(try TobyMessenger.connect(host: "127.0.0.1", port: port)) { error in
            XCTAssertEqual(
                error as? TobyError, .systemAtAddress(operation: "connect", address: "127.0.0.1:\(port)", errno: ECONNREFUSED))
        }
    }

    func testUnresolvableHost() {
        XCTAssertThrowsError(try TobyMessenger.connect(host: "no-such-host.invalid", port: 1)) { error in
            guard case TobyError.unresolvableHost(let host, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(host, "no-such-host.invalid")
        }
    }

    func testBigEndianInteroperatesByteForByte() throws {
        let (messenger, peer) = try makePair(try TobyConfiguration(byteOrder: .bigEndian))
        try messenger.send(Array("toby is a good dog".utf8))
        XCTAssertEqual(peer.read(26), [0, 0, 0, 0, 0, 0, 0, 0x12] + Array("toby is a good dog".utf8))
    }

    func testLittleEndianWireBytes() throws {
        let (messenger, peer) = try makePair()
        try messenger.send("toby is a good dog")
        XCTAssertEqual(peer.read(26), [0x12, 0, 0, 0, 0, 0, 0, 0] + Array("toby is a good dog".utf8))
    }
}

/// A one-shot value handed from one thread to another.
final class ResultBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: TobyError??

    func set(_ error: TobyError?) {
        condition.lock()
        value = .some(error)
        condition.broadcast()
        condition.unlock()
    }

    func wait() -> TobyError? {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
