import ArgumentParser

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct TobyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "toby",
        abstract: "Send, receive and echo TobyTcp messages (an 8-byte length prefix, then the payload).",
        discussion: """
            The prefix is little-endian by default; use --byte-order big on both \
            ends to talk to services built on the Rust tobytcp crate. Servers print \
            'listening on ADDRESS' when ready and stop cleanly on SIGINT or SIGTERM. \
            Errors print one line, 'toby: …', on stderr and exit with status 1.

            Examples:
              toby echo --port 15235 &
              toby send --port 15235 --replies 2 hello world
              toby listen --unix /tmp/toby.sock
              toby send --unix /tmp/toby.sock --hex 00ff10
              toby bench --port 15235 --connections 8 --duration 10s
            """,
        subcommands: [EchoCommand.self, SendCommand.self, ListenCommand.self, BenchCommand.self])

    /// Ignores SIGPIPE before anything runs: a closed stdout (`toby listen |
    /// head -1`) or a gone peer then shows up as EPIPE where it is handled
    /// (``Output`` ends the tool quietly, with status 0), instead of killing it.
    static func main() {
        _ = signal(SIGPIPE, SIG_IGN)
        main(nil)
    }
}
