// The README's quick start, verbatim; Tests/TobyToolTests/QuickStartTests.swift
// runs it, so the README's code keeps working.
import TobyTCP

// Server: echo every message back, one task per connection on the event
// loops (one thread per core). Port 0 picks a free port.
let server = try TobyServer.serve(host: "127.0.0.1", port: 0) { connection in
    for try await batch in connection.batches {
        try await connection.send(contentsOf: batch)
    }
}

// Client: the blocking messenger. Send one message, print the reply.
let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
let replies = try messenger.start()
try messenger.send("toby is a good dog")
print(String(decoding: try replies.receive()!, as: UTF8.self))  // toby is a good dog
try messenger.close()  // sends everything accepted, then ends the stream
server.close()  // stops accepting; each connection sends what it queued, then ends
