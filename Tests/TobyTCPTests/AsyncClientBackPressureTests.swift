import XCTest

@testable import TobyTCP

/// An async client that streams more than the socket buffers hold to an
/// echo server, reading the echoes with a task of its own, finishes: its
/// reads go on while its output is full. (When a full output paused its
/// reads too, it and the server, which pauses reading while its replies
/// back up, each waited for the other: `toby bench --mode one-way --api
/// async` hung against `toby echo`.)
final class AsyncClientBackPressureTests: XCTestCase {
    func testStreamingToAnEchoServerNeverDeadlocks() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let server = try TobyServer.listen(port: 0, group: group) { _ in EchoHandler() }
        defer { server.close(gracePeriod: .zero) }
        let connection = try await TobyAsyncConnection.connect(host: "127.0.0.1", port: server.port, group: group)
        let payload = [UInt8](repeating: 0x5a, count: 100_000)
        let batches = 25  // 16 messages each: 40 MB, far beyond both ends' buffers
        let outcome = try await withThrowingTaskGroup(of: Int?.self) { tasks in
            tasks.addTask {
                let reader = Task(executorPreference: connection.executor) { () throws -> Int in
                    var count = 0
                    for try await batch in connection.batches {
                        for message in batch where message.count != payload.count { throw TobyError.closed }
                        count += batch.count
                    }
                    return count
                }
                for _ in 0..<batches { try await connection.send(contentsOf: Array(repeating: payload, count: 16)) }
                try await connection.close()
                return try await reader.value
            }
            tasks.addTask {
                // A failsafe, not a synchronisation: a deadlock fails instead of hanging.
                try await Task.sleep(for: .seconds(60))
                return nil
            }
            let first = try await tasks.next() ?? nil
            tasks.cancelAll()
            if first == nil { connection.abort() }
            return first
        }
        XCTAssertEqual(outcome, batches * 16, "every echo came back before the failsafe")
    }
}
