import Histogram

/// What `toby bench` prints at the end: a table, or one JSON object.
struct BenchSummary {
    let mode: BenchMode
    let api: BenchAPI
    let connections: Int
    let size: Int
    let inFlight: Int
    let byteOrder: ByteOrderArgument
    let seconds: Double
    let warmupSeconds: Double
    /// Replies (pipeline, ping-pong) or messages sent (one-way) inside the
    /// measured interval.
    let messages: Int
    /// Every reply received, warm-up and drain included (each checked,
    /// except in one-way mode).
    let replies: Int
    /// Round trips in nanoseconds; nil in one-way mode.
    let latency: Histogram<UInt64>?

    var messagesPerSecond: Double { Double(messages) / seconds }
    var megabytesPerSecond: Double { Double(messages) * Double(size) / seconds / 1e6 }

    /// p50, p99, p99.9 and max in microseconds, if anything was measured.
    var percentiles: [(name: String, microseconds: Double)]? {
        guard let latency, latency.totalCount > 0 else { return nil }
        return [
            ("p50", Double(latency.valueAtPercentile(50)) / 1000),
            ("p99", Double(latency.valueAtPercentile(99)) / 1000),
            ("p99.9", Double(latency.valueAtPercentile(99.9)) / 1000),
            ("max", Double(latency.max) / 1000),
        ]
    }

    var table: String {
        var lines = [
            "toby bench: \(mode.rawValue), \(api.rawValue) client, \(connections) connection\(connections == 1 ? "" : "s"), "
                + "\(size) B messages" + (mode == .pipeline ? ", \(inFlight) in flight each" : "")
                + ", \(byteOrder.rawValue)-endian, \(Self.decimal(seconds, 2)) s measured after \(Self.decimal(warmupSeconds, 2)) s warm-up",
            "  messages    \(Self.grouped(messages))  (\(Self.grouped(Int(messagesPerSecond.rounded()))) msg/s)",
            "  throughput  \(Self.decimal(megabytesPerSecond, 1)) MB/s"
                + (mode == .oneWay ? " sent" : " each way"),
        ]
        if let percentiles {
            lines.append(
                "  latency     " + percentiles.map { "\($0.name) \(Self.duration($0.microseconds))" }.joined(separator: "  "))
        }
        lines.append(
            mode == .oneWay
                ? "  replies     \(Self.grouped(replies)) read back, not checked"
                : "  checked     \(Self.grouped(replies)) replies, every byte as sent")
        return lines.joined(separator: "\n")
    }

    var json: String {
        var fields: [(String, String)] = [
            ("mode", "\"\(mode.rawValue)\""),
            ("api", "\"\(api.rawValue)\""),
            ("connections", "\(connections)"),
            ("size", "\(size)"),
            ("in_flight", "\(inFlight)"),
            ("byte_order", "\"\(byteOrder.rawValue)\""),
            ("seconds", Self.decimal(seconds, 3)),
            ("warmup_seconds", Self.decimal(warmupSeconds, 3)),
            ("messages", "\(messages)"),
            ("msgs_per_s", Self.decimal(messagesPerSecond, 1)),
            ("mb_per_s", Self.decimal(megabytesPerSecond, 3)),
            ("replies", "\(replies)"),
            ("replies_checked", mode == .oneWay ? "false" : "true"),
        ]
        if let percentiles {
            let keys = ["p50_us", "p99_us", "p999_us", "max_us"]
            for (key, value) in zip(keys, percentiles) { fields.append((key, Self.decimal(value.microseconds, 3))) }
        }
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// `bench: 3.0 s measuring: 1,224,691 msg/s, 78.4 MB/s`
    static func progress(elapsed: Double, rate: Double, size: Int, phase: String) -> String {
        "bench: \(decimal(elapsed, 1)) s \(phase): \(grouped(Int(rate.rounded()))) msg/s, "
            + "\(decimal(rate * Double(size) / 1e6, 1)) MB/s"
    }

    /// `1234567` as `1,234,567`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, digit) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return value < 0 ? "-" + out : out
    }

    /// `value` with `places` decimals, no exponent (JSON and tables alike).
    static func decimal(_ value: Double, _ places: Int) -> String {
        guard value.isFinite else { return "0" }
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        let fraction = Int(scaled - Double(whole) * scale)
        var text = String(whole)
        if places > 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: places - digits.count) + digits
        }
        return value < 0 && scaled > 0 ? "-" + text : text
    }

    /// Microseconds as `45.1 µs` or `1.20 ms`.
    static func duration(_ microseconds: Double) -> String {
        microseconds >= 1000
            ? decimal(microseconds / 1000, 2) + " ms" : decimal(microseconds, microseconds >= 100 ? 0 : 1) + " µs"
    }
}
