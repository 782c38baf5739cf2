import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

@main
struct Benchmarks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "benchmarks",
        abstract: "TobyTCP vs a pure-Swift codec vs SwiftNIO vs the kernel ceiling, on loopback.",
        discussion: """
            Every scenario runs each implementation \(defaultRuns) times (once with --quick) and reports \
            the median. Figures are only meaningful in a release build: swift run -c release benchmarks
            """)

    static let defaultRuns = 3

    static let isDebugBuild: Bool = {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }()

    @Flag(help: "Small message counts and one run per measurement (a smoke test, under a minute).")
    var quick = false

    @Option(help: "Run only scenarios whose id or title contains this text (case-insensitive).")
    var filter: String?

    @Option(help: "Run only implementations whose name contains this text (for profiling; ratios need the baselines).")
    var implementation: String?

    @Option(help: "Write every figure to this JSON file.")
    var json: String?

    @Option(help: "Draw the throughput results as a bar chart into this SVG file.")
    var svg: String?

    @Option(help: "Runs per measurement (default \(defaultRuns), 1 with --quick).")
    var runs: Int?

    @Option(help: "Seconds one run may take before it counts as hung (default 120, 30 with --quick).")
    var timeout: Double?

    @Flag(help: "List the scenarios and exit.")
    var list = false

    func validate() throws {
        if let runs, runs < 1 { throw ValidationError("--runs must be at least 1") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let debug = Self.isDebugBuild
        if debug {
            print("NOTE: debug build: figures are not representative; use `swift run -c release benchmarks`.")
        }
        prepareProcess()
        let settings = Settings(
            quick: quick, runs: runs ?? (quick ? 1 : Self.defaultRuns), timeout: timeout ?? (quick ? 30 : 120))
        let all =
            OneWay.scenarios(settings) + [
                PingPong.scenario(settings), Pipelined.scenario(settings),
                SharedSenders.scenario(settings), Connections.scenario(settings),
            ] + EchoServers.scenarios(settings) + Observability.scenarios(settings)
        if list {
            for scenario in all { print("\(scenario.id)\t\(scenario.title)") }
            return
        }
        let selected = all.filter { $0.matches(filter) }.map { $0.keepingRows(matching: implementation) }.filter {
            !$0.rows.isEmpty
        }
        guard !selected.isEmpty else {
            throw ValidationError("--filter \(filter ?? "") matches no scenario; --list shows them")
        }

        let started = nowNanoseconds()
        let machine = Machine.describe()
        print("TobyTCP benchmarks: \(debug ? "DEBUG" : "release") build, \(machine), loopback 127.0.0.1")
        print(
            "mode: \(quick ? "quick" : "full"), \(settings.runs) run(s) per measurement, median reported; MB/s counts payload bytes (10^6)"
        )
        print(
            "write syscalls: \(WriteSyscalls.works ? "perf tracepoints syscalls:sys_enter_{write,writev,pwrite*,sendto,sendmsg,sendmmsg}, all threads" : "n/a (perf_event_open or tracefs unavailable)")"
        )
        print("")

        var results: [ScenarioResult] = []
        for (index, scenario) in selected.enumerated() {
            let result = measure(scenario, settings: settings, index: index + 1, total: selected.count)
            results.append(result)
            print(Table.render(result, runs: result.scenario.runs ?? settings.runs))
            print("")
        }
        let seconds = Double(nowNanoseconds() - started) / 1e9
        print("total wall time: \(fixed(seconds, 1)) s")

        if let json {
            let meta: [(String, JSON)] = [
                ("build", .string(debug ? "debug" : "release")),
                ("machine", .string(machine)),
                ("mode", .string(quick ? "quick" : "full")),
                ("runs_per_measurement", .number(Double(settings.runs))),
                ("write_syscalls_counted", .bool(WriteSyscalls.works)),
                ("wall_seconds", .number(seconds)),
            ]
            try writeFile(json, JSONReport.document(results, meta: meta).render() + "\n")
            progress("wrote \(json)")
        }
        if let svg {
            try writeFile(
                svg,
                SVGChart.render(results, subtitle: "\(debug ? "DEBUG build, " : "")\(machine); median of \(settings.runs) run(s)")
            )
            progress("wrote \(svg)")
        }

        let failures = results.flatMap { result in
            result.rows.compactMap { row in row.problem.map { "\(result.scenario.title) · \(row.name): \($0)" } }
        }
        if !failures.isEmpty {
            progress("FAILED: \(failures.count) measurement(s) failed or produced zero/NaN figures:")
            for failure in failures { progress("  \(failure)") }
            throw ExitCode.failure
        }
    }

    func writeFile(_ path: String, _ contents: String) throws {
        guard let file = fopen(path, "w") else { throw BenchError.system("fopen(\(path))", errno) }
        defer { fclose(file) }
        var contents = contents
        let written = contents.withUTF8 { fwrite($0.baseAddress, 1, $0.count, file) }
        if written != contents.utf8.count { throw BenchError.system("fwrite(\(path))", errno) }
    }
}

enum Machine {
    /// "N cores, Linux <release>".
    static func describe() -> String {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, Linux \(release)"
    }
}
