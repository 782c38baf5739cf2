/// Which code a row measures; the first row of a family is that family's
/// baseline for the ratio columns.
enum Family: String, Sendable {
    case toby = "TobyTCP"
    case pure = "pure Swift"
    case nio = "SwiftNIO"
    case nioAsync = "SwiftNIO async"
    case kernel = "kernel"
}

/// The figures of one run of one row, by metric key (see `Metric`).
struct Sample: Sendable {
    var metrics: [String: Double]

    /// Messages/s and payload MB/s (10^6 bytes) for `messages` of `size` bytes.
    static func throughput(messages: Int, size: Int, nanoseconds: UInt64) -> Sample {
        let seconds = Double(nanoseconds) / 1e9
        return Sample(metrics: [
            "msgs_per_s": Double(messages) / seconds,
            "mb_per_s": Double(messages * size) / seconds / 1e6,
            "seconds": seconds,
        ])
    }
}

/// A column of a scenario's table.
struct Metric: Sendable {
    let key: String
    let header: String
    let format: @Sendable (Double) -> String
    /// True if zero (or a negative, noisy delta) is a legitimate figure, so
    /// it does not fail the run (memory deltas).
    var allowsZero = false
}

/// One implementation in one scenario.
struct Row {
    let name: String
    let family: Family
    let run: () throws -> Sample
}

/// How long and how often to measure.
struct Settings: Sendable {
    let quick: Bool
    let runs: Int
    /// Seconds one run may take before it counts as hung.
    let timeout: Double
    /// Multiplies the default message counts (quick mode: smaller).
    func count(_ full: Int, quick small: Int) -> Int { quick ? small : full }
}

/// A scenario: parameters, the columns of its table and its rows.
struct Scenario {
    let id: String
    let title: String
    let parameters: [(String, Double)]
    let columns: [Metric]
    /// The metric the ratio columns compare.
    let primary: String
    let higherIsBetter: Bool
    /// True if the SVG chart shows it (throughput scenarios).
    let chart: Bool
    let rows: [Row]
    /// Lines printed under the table before it runs (say, a connection
    /// count scaled down to the descriptor limit).
    var notes: [String] = []
    /// Lines computed from the results, printed under the table (targets).
    var summary: ((ScenarioResult) -> [String])? = nil
    /// Runs the rows in rounds (A B C, A B C, …) instead of one row after
    /// the other, so that drift of the machine spreads over every row: for
    /// rows that should differ by a few percent at most.
    var interleaved = false
    /// Runs per row instead of `Settings.runs` (more, for small differences).
    var runs: Int? = nil

    /// The scenario with only the rows whose name contains `filter`.
    func keepingRows(matching filter: String?) -> Scenario {
        guard let filter, !filter.isEmpty else { return self }
        let needle = filter.lowercased()
        return Scenario(
            id: id, title: title, parameters: parameters, columns: columns, primary: primary,
            higherIsBetter: higherIsBetter, chart: chart, rows: rows.filter { $0.name.lowercased().contains(needle) },
            notes: notes, summary: summary, interleaved: interleaved, runs: runs)
    }

    func matches(_ filter: String?) -> Bool {
        guard let filter, !filter.isEmpty else { return true }
        let needle = filter.lowercased()
        return id.lowercased().contains(needle) || title.lowercased().contains(needle)
    }
}

/// What a row produced: every run's sample, or an error.
struct RowResult {
    let name: String
    let family: Family
    /// Metric keys whose zero or negative median is not a failure.
    var allowsZero: Set<String> = []
    var samples: [Sample] = []
    var error: String?

    /// The median of each metric over the runs.
    var medians: [String: Double] {
        guard let keys = samples.first?.metrics.keys else { return [:] }
        var result: [String: Double] = [:]
        for key in keys { result[key] = median(samples.map { $0.metrics[key] ?? .nan }) }
        return result
    }

    /// Why the row must fail the run: an error, or a zero/NaN figure.
    var problem: String? {
        if let error { return error }
        if samples.isEmpty { return "no samples" }
        for (key, value) in medians.sorted(by: { $0.key < $1.key })
        where !(value.isFinite && (value > 0 || allowsZero.contains(key))) {
            return "figure \(key) is \(value)"
        }
        return nil
    }
}

struct ScenarioResult {
    let scenario: Scenario
    let rows: [RowResult]

    /// The baseline row of a family (its first row without a problem).
    func baseline(_ family: Family) -> RowResult? {
        rows.first { $0.family == family && $0.problem == nil }
    }

    /// How many times better `row` is than `base` on the primary metric.
    func ratio(_ row: RowResult, to base: RowResult?) -> Double? {
        guard let base, row.problem == nil,
            let value = row.medians[scenario.primary], let reference = base.medians[scenario.primary],
            value > 0, reference > 0
        else { return nil }
        return scenario.higherIsBetter ? value / reference : reference / value
    }
}

/// Runs every row of `scenario` `settings.runs` times, printing progress:
/// row after row, or in rounds if the scenario is `interleaved`.
func measure(_ scenario: Scenario, settings: Settings, index: Int, total: Int) -> ScenarioResult {
    var results = scenario.rows.map { row in
        RowResult(name: row.name, family: row.family, allowsZero: Set(scenario.columns.filter(\.allowsZero).map(\.key)))
    }
    for note in scenario.notes { progress("NOTE: \(note)") }
    let runs = scenario.runs ?? settings.runs
    func runOnce(_ rowIndex: Int, _ run: Int) {
        let row = scenario.rows[rowIndex]
        guard results[rowIndex].error == nil else { return }
        let label = "    run \(run)/\(runs)" + (scenario.interleaved ? " · \(row.name)" : "")
        do {
            let sample = try row.run()
            results[rowIndex].samples.append(sample)
            let shown =
                scenario.columns.first.map { column in
                    "\(column.header.trimmingPrefix(" ")) \(sample.metrics[column.key].map(column.format) ?? "–")"
                } ?? ""
            progress("\(label): \(shown)")
        } catch {
            results[rowIndex].error = "\(error)"
            progress("\(label): FAILED: \(error)")
        }
    }
    if scenario.interleaved {
        progress("[\(index)/\(total)] \(scenario.title) · \(scenario.rows.count) rows in rounds")
        // Each round starts one row later, so no row always runs first or
        // always after the same neighbour (what one run leaves behind, such
        // as sockets in TIME_WAIT, falls on every row alike).
        let count = scenario.rows.count
        for run in 1...runs {
            for step in 0..<count { runOnce((run - 1 + step) % count, run) }
        }
    } else {
        for rowIndex in scenario.rows.indices {
            progress("[\(index)/\(total)] \(scenario.title) · \(scenario.rows[rowIndex].name)")
            for run in 1...runs where results[rowIndex].error == nil { runOnce(rowIndex, run) }
        }
    }
    return ScenarioResult(scenario: scenario, rows: results)
}

// MARK: Number formats

func formatRate(_ value: Double) -> String {
    guard value.isFinite else { return "–" }
    if value >= 1e9 { return fixed(value / 1e9, 2) + "G" }
    if value >= 1e6 { return fixed(value / 1e6, 2) + "M" }
    if value >= 1e3 { return fixed(value / 1e3, 1) + "k" }
    return fixed(value, 0)
}

func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "–" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9e18 else { return String(value) }
    let units = Int(scaled)
    let sign = value < 0 && units != 0 ? "-" : ""
    if digits == 0 { return sign + String(units) }
    let text = String(units)
    let padded = String(repeating: "0", count: max(0, digits + 1 - text.count)) + text
    return sign + padded.dropLast(digits) + "." + padded.suffix(digits)
}
