/// 256 connections at once, 64 B messages one way on each; total messages
/// per second from the first send until the last message arrived anywhere.
/// Blocking implementations send from 2 threads, each owning half of the
/// connections and sending 256 messages on each in turn; the async ones
/// send from a task per connection.
enum Connections {
    static let connections = 256
    static let senderThreads = 2

    static func scenario(_ settings: Settings) -> Scenario {
        let perConnection = settings.count(1_000, quick: 128)
        let timeout = settings.timeout
        let n = Connections.connections, senders = Connections.senderThreads
        return Scenario(
            id: "connections-256",
            title: "256 connections, 64 B one-way",
            parameters: [("payload_bytes", 64), ("connections", Double(n)), ("messages_per_connection", Double(perConnection))],
            columns: [Metric(key: "msgs_per_s", header: "msgs/s", format: formatRate)],
            primary: "msgs_per_s", higherIsBetter: true, chart: true,
            rows: [
                Row(name: "TobyTCP async (loop, task / conn each side)", family: .toby) {
                    try TobyAsync.manyConnections(connections: n, perConnection: perConnection, timeout: timeout)
                },
                Row(name: "TobyTCP receive { } (thread / conn)", family: .toby) {
                    try Toby.manyConnections(
                        connections: n, perConnection: perConnection, senderThreads: senders, timeout: timeout)
                },
                Row(name: "pure Swift (thread / conn)", family: .pure) {
                    try PureSwift.manyConnections(
                        connections: n, perConnection: perConnection, senderThreads: senders, timeout: timeout)
                },
                Row(name: "SwiftNIO (loops = cores, each side)", family: .nio) {
                    try NIO.manyConnections(connections: n, perConnection: perConnection, timeout: timeout)
                },
                Row(name: "SwiftNIO async (2 tasks / conn)", family: .nioAsync) {
                    try NIOAsync.manyConnections(connections: n, perConnection: perConnection, timeout: timeout)
                },
                Row(name: "kernel ceiling (poll, \(Kernel.label))", family: .kernel) {
                    try Kernel.manyConnections(
                        connections: n, perConnection: perConnection, senderThreads: senders, timeout: timeout)
                },
            ])
    }
}
