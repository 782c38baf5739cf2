#if canImport(Glibc)
import Glibc
#endif

/// Monotonic clock in nanoseconds.
@inline(__always)
func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Why a measurement did not produce figures.
enum BenchError: Error, CustomStringConvertible {
    case timeout(String)
    case integrity(String)
    case system(String, Int32)
    case unsupported(String)

    var description: String {
        switch self {
        case .timeout(let what): return "timeout: \(what)"
        case .integrity(let what): return "integrity check failed: \(what)"
        case .system(let call, let err): return "\(call) failed: \(String(cString: strerror(err)))"
        case .unsupported(let what): return "unsupported: \(what)"
        }
    }
}

/// The median of `values` (mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// Writes one line to stderr (progress; never inside a measured region).
func progress(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 { break }
            offset += n
        }
    }
}
