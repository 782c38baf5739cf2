import TobyTCP

#if canImport(Glibc)
import Glibc
#endif

/// `toby echo --stats INTERVAL`: one line per interval on stderr, from the
/// server's statistics (what changed since the last line, as rates).
enum StatsLine {
    /// Prints a line every `interval` on a thread of its own, for as long as
    /// the process runs.
    static func start(every interval: Duration, server: TobyServer) {
        let (seconds, attoseconds) = interval.components
        let microseconds = UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
        try? Threads.spawn(stackSize: connectionStack) {
            // From zero: the first line counts everything since the start.
            var last = TobyServer.Statistics()
            var lastTime = monotonicNanoseconds()
            while true {
                usleep(microseconds)
                let now = server.statistics()
                let time = monotonicNanoseconds()
                Output.error(line(now, since: last, seconds: Double(time - lastTime) / 1e9))
                last = now
                lastTime = time
            }
        }
    }

    /// `toby: stats: 12 connections (+3 -1), in 51234 msg/s 3.3 MB/s, out 51234 msg/s 3.3 MB/s, paused 0, refused 0, errors 0`
    static func line(_ now: TobyServer.Statistics, since last: TobyServer.Statistics, seconds: Double) -> String {
        let elapsed = max(seconds, 1e-9)
        func rate(_ value: Int, _ previous: Int) -> Double { Double(value - previous) / elapsed }
        func megabytes(_ value: Int, _ previous: Int) -> String {
            let value = rate(value, previous) / 1e6
            return value >= 10 ? String(Int(value.rounded())) : String(Double(Int((value * 10).rounded())) / 10)
        }
        let errors =
            (now.framesTooLarge + now.framesTruncated + now.readTimeouts + now.resets + now.writeTimeouts)
            - (last.framesTooLarge + last.framesTruncated + last.readTimeouts + last.resets + last.writeTimeouts)
        return "stats: \(now.connectionsOpen) connections (+\(now.connectionsAccepted - last.connectionsAccepted) "
            + "-\(now.connectionsClosed - last.connectionsClosed)), "
            + "in \(Int(rate(now.messagesReceived, last.messagesReceived).rounded())) msg/s "
            + "\(megabytes(now.bytesReceived, last.bytesReceived)) MB/s, "
            + "out \(Int(rate(now.messagesSent, last.messagesSent).rounded())) msg/s "
            + "\(megabytes(now.bytesSent, last.bytesSent)) MB/s, "
            + "paused \(now.readPauses - last.readPauses), refused \(now.acceptFailures - last.acceptFailures), "
            + "errors \(errors)"
    }
}
