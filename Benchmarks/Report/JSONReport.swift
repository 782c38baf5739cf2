/// A minimal JSON writer (no Foundation): every figure of the run.
indirect enum JSON {
    case number(Double)
    case string(String)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    static func num(_ value: Double?) -> JSON {
        guard let value, value.isFinite else { return .null }
        return .number(value)
    }

    func render(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case .number(let value):
            return value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
        case .string(let text):
            return JSON.quote(text)
        case .bool(let value):
            return value ? "true" : "false"
        case .null:
            return "null"
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { inner + $0.render(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            return "{\n" + members.map { inner + JSON.quote($0.0) + ": " + $0.1.render(indent: inner) }.joined(separator: ",\n")
                + "\n\(indent)}"
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

enum JSONReport {
    static func document(_ results: [ScenarioResult], meta: [(String, JSON)]) -> JSON {
        .object(meta + [("scenarios", .array(results.map(scenario)))])
    }

    static func scenario(_ result: ScenarioResult) -> JSON {
        let s = result.scenario
        let pure = result.baseline(.pure), nio = result.baseline(.nio)
        let nioAsync = result.baseline(.nioAsync), kernel = result.baseline(.kernel)
        let rows: [JSON] = result.rows.map { row in
            var members: [(String, JSON)] = [
                ("implementation", .string(row.name)),
                ("family", .string(row.family.rawValue)),
                ("ok", .bool(row.problem == nil)),
            ]
            if let problem = row.problem { members.append(("error", .string(problem))) }
            members.append(("median", .object(row.medians.sorted { $0.key < $1.key }.map { ($0.key, .num($0.value)) })))
            members.append(
                (
                    "runs",
                    .array(
                        row.samples.map { sample in
                            .object(sample.metrics.sorted { $0.key < $1.key }.map { ($0.key, .num($0.value)) })
                        })
                ))
            members.append(("ratio_vs_pure_swift", .num(result.ratio(row, to: pure))))
            members.append(("ratio_vs_nio", .num(result.ratio(row, to: nio))))
            members.append(("ratio_vs_nio_async", .num(result.ratio(row, to: nioAsync))))
            members.append(("percent_of_kernel", .num(result.ratio(row, to: kernel).map { $0 * 100 })))
            return .object(members)
        }
        return .object([
            ("id", .string(s.id)),
            ("title", .string(s.title)),
            ("parameters", .object(s.parameters.map { ($0.0, .number($0.1)) })),
            ("primary_metric", .string(s.primary)),
            ("higher_is_better", .bool(s.higherIsBetter)),
            ("rows", .array(rows)),
        ])
    }
}
