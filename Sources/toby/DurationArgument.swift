import ArgumentParser

/// A duration on the command line: a number and a unit, such as `500ms`,
/// `2s`, `1.5s`, `1m` or `1h`. The number may have up to 9 decimals; the
/// unit is required (a bare `5` could mean seconds or milliseconds).
enum DurationArgument {
    /// Nanoseconds per unit, longest suffix first so `ms` is not read as `m`.
    private static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    /// Parses `text`, or throws a `ValidationError` that says what is wrong
    /// and what to write instead.
    static func parse(_ text: String) throws -> Duration {
        try parse(text, allowingZero: false)
    }

    /// As ``parse(_:)``, also taking zero (`0`, `0s`): a grace period may be none.
    static func parseAllowingZero(_ text: String) throws -> Duration {
        if text == "0" { return .zero }
        return try parse(text, allowingZero: true)
    }

    private static func parse(_ text: String, allowingZero: Bool) throws -> Duration {
        let example = "a number and a unit, like 500ms, 2s, 1.5s or 1m"
        guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else {
            if !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
                throw ValidationError("'\(text)' has no unit: write \(text)s for seconds or \(text)ms for milliseconds")
            }
            throw ValidationError("'\(text)' is not a duration: write \(example) (units ms, s, m, h)")
        }
        let number = text.dropLast(unit.suffix.count)
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let digits = { (part: Substring) in !part.isEmpty && part.allSatisfy { $0.isASCII && $0.isNumber } }
        guard let whole = parts.first, digits(whole), parts.count == 1 || digits(parts[1]) else {
            throw ValidationError("'\(text)' is not a duration: write \(example)")
        }
        let fraction = parts.count == 2 ? parts[1] : ""
        guard fraction.count <= 9 else {
            throw ValidationError("'\(text)' has more than 9 decimals")
        }
        // Exact integer arithmetic: whole units, then the decimals' share.
        guard let wholeValue = Int64(whole) else { throw ValidationError("'\(text)' is too long a duration") }
        let (wholeNanoseconds, overflow) = wholeValue.multipliedReportingOverflow(by: unit.nanoseconds)
        var scale: Int64 = 1
        for _ in 0..<fraction.count { scale *= 10 }
        let fractionValue = Int64(fraction) ?? 0
        // Up to 10^9 × 3.6e12 before the division: computed at full width.
        let fractionNanoseconds = scale.dividingFullWidth(fractionValue.multipliedFullWidth(by: unit.nanoseconds)).quotient
        let (total, overflowAgain) = wholeNanoseconds.addingReportingOverflow(fractionNanoseconds)
        guard !overflow, !overflowAgain else { throw ValidationError("'\(text)' is too long a duration") }
        guard total > 0 || allowingZero else { throw ValidationError("'\(text)' is not positive: give a duration above zero") }
        return .nanoseconds(total)
    }
}
