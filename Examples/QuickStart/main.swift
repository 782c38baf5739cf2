// The README's quick start, verbatim; Tests/TobyToolTests/QuickStartTests.swift
// runs it, so the README's code keeps working.
import TobyTCP

// Server: echo every message back. Port 0 picks a free port; the task is
// detached so it does not run on the main thread, which the client blocks.
let listener = try TobyListener(host: "127.0.0.1", port: 0)
let server = Task.detached {
    let connection = try listener.accept()
    let messages = try connection.start()
    for try await message in messages {
        try connection.send(message)
    }
    try connection.close()
}

// Client: send one message, print the reply.
let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: listener.port)
let replies = try messenger.start()
try messenger.send("toby is a good dog")
print(String(decoding: try replies.receive()!, as: UTF8.self))  // toby is a good dog
try messenger.close()  // sends everything accepted, then ends the stream
try await server.value  // the server saw the end of the stream and closed
