/// Aligned text tables, one per scenario.
enum Table {
    static func render(_ result: ScenarioResult, runs: Int) -> String {
        let scenario = result.scenario
        let parameters = scenario.parameters.map { "\($0.0)=\(formatParameter($0.1))" }.joined(separator: " ")
        var lines = ["== \(scenario.title) (\(parameters); median of \(runs) run\(runs == 1 ? "" : "s")) =="]
        var header = ["implementation"] + scenario.columns.map(\.header)
        header += ["×pure", "×NIO", "×NIO async", "%kernel"]
        var body: [[String]] = []
        let pure = result.baseline(.pure), nio = result.baseline(.nio)
        let nioAsync = result.baseline(.nioAsync), kernel = result.baseline(.kernel)
        for row in result.rows {
            if let problem = row.problem {
                body.append([row.name, "FAILED: \(problem)"])
                continue
            }
            let medians = row.medians
            var cells = [row.name]
            cells += scenario.columns.map { column in medians[column.key].map(column.format) ?? "n/a" }
            cells.append(times(result.ratio(row, to: pure)))
            cells.append(times(result.ratio(row, to: nio)))
            cells.append(times(result.ratio(row, to: nioAsync)))
            cells.append(result.ratio(row, to: kernel).map { fixed($0 * 100, 1) + "%" } ?? "–")
            body.append(cells)
        }
        lines += align([header] + body)
        let basis =
            scenario.higherIsBetter
            ? "ratios compare \(scenario.columns.first { $0.key == scenario.primary }?.header ?? scenario.primary) (this / baseline)"
            : "ratios compare p50 latency (baseline / this): above 1× is faster"
        lines.append("   \(basis); baselines are each family's first row")
        for note in scenario.notes { lines.append("   note: \(note)") }
        if let summary = scenario.summary { lines += summary(result).map { "   \($0)" } }
        return lines.joined(separator: "\n")
    }

    static func times(_ ratio: Double?) -> String {
        guard let ratio else { return "–" }
        return fixed(ratio, ratio >= 10 ? 1 : 2) + "×"
    }

    static func formatParameter(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : fixed(value, 2)
    }

    /// Left-aligns the first column, right-aligns the others; a row with
    /// fewer cells (a failure) runs its last cell across the rest.
    static func align(_ rows: [[String]]) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows where row.count == columns {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        return rows.map { row in
            var line = ""
            for (i, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                if i == 0 {
                    line += cell + pad
                } else if row.count < columns && i == row.count - 1 {
                    line += "  " + cell
                } else {
                    line += "  " + pad + cell
                }
            }
            return line
        }
    }
}
