/// A hand-written SVG bar chart of the throughput scenarios: one panel per
/// scenario, one horizontal bar per implementation, scaled to the panel's
/// largest value (median msgs/s).
enum SVGChart {
    static let width = 900.0
    static let labelWidth = 330.0
    static let barHeight = 16.0
    static let gap = 4.0

    static func color(_ family: Family) -> String {
        switch family {
        case .toby: return "#d9480f"
        case .pure: return "#5c7cfa"
        case .nio: return "#2b8a3e"
        case .nioAsync: return "#66a80f"
        case .kernel: return "#868e96"
        }
    }

    static func render(_ results: [ScenarioResult], subtitle: String) -> String {
        var body: [String] = []
        var y = 64.0
        for result in results where result.scenario.chart {
            let key = result.scenario.primary
            let values = result.rows.map { $0.problem == nil ? ($0.medians[key] ?? 0) : 0 }
            let largest = max(values.max() ?? 1, 1)
            body.append(text(x: 10, y: y, escape(result.scenario.title) + " — messages/s", size: 14, bold: true))
            y += 8
            for (row, value) in zip(result.rows, values) {
                let barWidth = (width - labelWidth - 110) * value / largest
                body.append(text(x: labelWidth - 6, y: y + barHeight - 4, escape(row.name), size: 11, anchor: "end"))
                body.append(
                    "<rect x=\"\(labelWidth)\" y=\"\(y)\" width=\"\(fixed(barWidth, 1))\" height=\"\(barHeight)\" fill=\"\(color(row.family))\"/>"
                )
                let label = row.problem == nil ? formatRate(value) : "FAILED"
                body.append(text(x: labelWidth + barWidth + 6, y: y + barHeight - 4, label, size: 11))
                y += barHeight + gap
            }
            y += 24
        }
        let height = y + 10
        var legend = ""
        var x = 10.0
        for family in [Family.toby, .pure, .nio, .nioAsync, .kernel] {
            legend += "<rect x=\"\(x)\" y=\"\(height - 20)\" width=\"12\" height=\"12\" fill=\"\(color(family))\"/>"
            legend += text(x: x + 16, y: height - 10, family.rawValue, size: 11)
            x += 130
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height + 20))" font-family="sans-serif">
            <rect width="100%" height="100%" fill="white"/>
            \(text(x: 10, y: 22, "TobyTCP benchmarks — throughput", size: 18, bold: true))
            \(text(x: 10, y: 38, escape(subtitle), size: 11))
            \(body.joined(separator: "\n"))
            \(legend)
            </svg>

            """
    }

    static func text(x: Double, y: Double, _ content: String, size: Int, bold: Bool = false, anchor: String = "start") -> String {
        "<text x=\"\(fixed(x, 1))\" y=\"\(fixed(y, 1))\" font-size=\"\(size)\"\(bold ? " font-weight=\"bold\"" : "") text-anchor=\"\(anchor)\">\(content)</text>"
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
