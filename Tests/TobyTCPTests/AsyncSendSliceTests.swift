import XCTest

@testable import TobyTCP

/// `TobyAsyncConnection.send(_: ArraySlice<UInt8>)`: what `messages` yields
/// goes straight back (the README's echo loop), in both byte orders, and a
/// slice is bounded and refused like an array.
final class AsyncSendSliceTests: XCTestCase {
    private func makeGroup() throws -> TobyEventLoopGroup {
        let group = try TobyEventLoopGroup(threads: 2)
        addTeardownBlock { group.shutdown() }
        return group
    }

    /// An async server that sends each message back as the slice `messages`
    /// yields, and a client connected to it.
    private func sliceEcho(
        _ configuration: TobyConfiguration, group: TobyEventLoopGroup
    ) async throws -> (TobyServer, TobyAsyncConnection) {
        let server = try TobyServer.serve(port: 0, configuration: configuration, group: group) { connection in
            for try await message in connection.messages {
                try await connection.send(message)
            }
        }
        let client = try await TobyAsyncConnection.connect(
            host: "127.0.0.1", port: server.port, configuration: configuration, group: group)
        return (server, client)
    }

    func testEchoingMessagesAsSlices() async throws {
        let group = try makeGroup()
        for order in [TobyConfiguration.ByteOrder.littleEndian, .bigEndian] {
            var configuration = TobyConfiguration()
            configuration.byteOrder = order
            let (server, client) = try await sliceEcho(configuration, group: group)
            defer { server.close() }
            // Around the inline limit (copied with the prefix) and larger than
            // the ring (a buffer of its own).
            let sizes = [0, 1, 100, OutputQueue.inlineLimit, OutputQueue.inlineLimit + 1, 70_000, 1 << 20, 5]
            let payloads = sizes.enumerated().map { pattern($0.element, seed: UInt64($0.offset)) }
            // The client sends slices too, cut from the middle of a larger
            // array (a start index other than 0), from a task off the loop.
            for payload in payloads {
                let padded = [0xEE, 0xEE, 0xEE] + payload + [0xEE]
                try await client.send(padded[3..<(3 + payload.count)])
            }
            var got: [[UInt8]] = []
            for try await message in client.messages {
                got.append(Array(message))
                if got.count == payloads.count { break }
            }
            XCTAssertEqual(got.map(\.count), sizes, "\(order)")
            XCTAssertTrue(got == payloads, "\(order): the echoed bytes differ from those sent")
            try await client.close()
        }
    }

    func testSliceOverTheLimitAndAfterCloseAreRefused() async throws {
        let group = try makeGroup()
        var configuration = TobyConfiguration()
        configuration.maxFrameLength = 16
        let (server, client) = try await sliceEcho(configuration, group: group)
        defer { server.close() }
        let bytes = [UInt8](repeating: 7, count: 40)
        do {
            try await client.send(bytes[2..<19])
            XCTFail("17 bytes over a limit of 16 were accepted")
        } catch let error as TobyError {
            XCTAssertEqual(error, .frameTooLarge(length: 17, limit: 16, prefix: []))
        }
        try await client.send(bytes[2..<18])
        var echoed: [UInt8]?
        for try await message in client.messages {
            echoed = Array(message)
            break
        }
        XCTAssertEqual(echoed, [UInt8](repeating: 7, count: 16))
        try await client.close()
        do {
            try await client.send(bytes[0..<1])
            XCTFail("a send after close was accepted")
        } catch let error as TobyError {
            XCTAssertEqual(error, .closed)
        }
    }
}
