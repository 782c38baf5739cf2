import Histogram

/// Round-trip times in nanoseconds, recorded after a warm-up.
struct LatencyRecorder: Sendable {
    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    let warmup: Int
    private(set) var seen = 0

    init(warmup: Int) { self.warmup = warmup }

    @inline(__always)
    mutating func record(_ nanoseconds: UInt64) {
        seen += 1
        if seen > warmup { histogram.record(max(1, nanoseconds)) }
    }

    var recorded: UInt64 { histogram.totalCount }

    /// p50/p99/p99.9/max in microseconds.
    func sample(expected: Int) throws -> Sample {
        guard histogram.totalCount == UInt64(expected) else {
            throw BenchError.integrity("recorded \(histogram.totalCount) round trips, expected \(expected)")
        }
        func us(_ ns: UInt64) -> Double { Double(ns) / 1000 }
        return Sample(metrics: [
            "p50_us": us(histogram.valueAtPercentile(50)),
            "p99_us": us(histogram.valueAtPercentile(99)),
            "p999_us": us(histogram.valueAtPercentile(99.9)),
            "max_us": us(histogram.max),
            "round_trips_per_s": 1e9 / histogram.mean,
        ])
    }
}
