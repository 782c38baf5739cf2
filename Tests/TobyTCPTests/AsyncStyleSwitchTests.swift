import CTobyFrame
import XCTest

@testable import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// Switching receive styles on one async connection, one after another:
/// `messages`, `batches`, `receive` and `withNextMessage` in every order, whether the
/// first message arrived alone in its read or with others behind it.
final class AsyncStyleSwitchTests: XCTestCase {
    enum Style: CaseIterable, Sendable {
        case messages, batches, borrowing, span

        /// Takes one unit (a message, or a read's batch); nil at the end.
        func takeOne(_ connection: TobyAsyncConnection) async throws -> [[UInt8]]? {
            switch self {
            case .messages:
                for try await message in connection.messages { return [Array(message)] }
                return nil
            case .batches:
                for try await batch in connection.batches { return batch.messages }
                return nil
            case .borrowing:
                return try await connection.receive { [Array($0)] }
            case .span:
                return try await connection.withNextMessage { span in
                    [(0..<span.byteCount).map { span.unsafeLoad(fromByteOffset: $0, as: UInt8.self) }]
                }
            }
        }
    }

    /// An async echo server whose task takes one unit in `first` style, then
    /// everything else in `then` style, echoing each message.
    private func server(first: Style, then: Style, group: TobyEventLoopGroup) throws -> TobyServer {
        try TobyServer.serve(port: 0, group: group) { connection in
            guard let head = try await first.takeOne(connection) else { return }
            try await connection.send(contentsOf: head)
            while let more = try await then.takeOne(connection) {
                try await connection.send(contentsOf: more)
            }
        }
    }

    func testEveryPairOfReceiveStylesDeliversEveryMessageOnce() async throws {
        let group = try TobyEventLoopGroup(threads: 1)
        defer { group.shutdown() }
        let payloads = (0..<6).map { pattern(1 + $0 * 3, seed: UInt64($0)) }
        for first in Style.allCases {
            for then in Style.allCases {
                for firstAlone in [true, false] {
                    let label = "\(first) then \(then), first message \(firstAlone ? "alone in its read" : "with others")"
                    let server = try server(first: first, then: then, group: group)
                    let peer = try connectRaw(port: server.port)
                    peer.setReceiveTimeout(seconds: 10)
                    var got: [[UInt8]] = []
                    if firstAlone {
                        // The echo proves the server took the first message
                        // before the others were even sent.
                        peer.write(frame(payloads[0]))
                        got.append(peer.readFrame() ?? [])
                        peer.write(payloads.dropFirst().flatMap { frame($0) })
                    } else {
                        peer.write(payloads.flatMap { frame($0) })
                    }
                    while got.count < payloads.count, let message = peer.readFrame() { got.append(message) }
                    XCTAssertEqual(got, payloads, label)
                    peer.shutdownWrite()
                    XCTAssertNil(peer.readFrame(), "\(label): a clean end after the last echo")
                    server.close(gracePeriod: .zero)
                }
            }
        }
    }
}
