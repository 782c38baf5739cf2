#!/usr/bin/env bash
# What counting statistics costs a server (issue 18): the handler echo of
# `benchmarks` as shipped against the same code built with the per-message
# counting compiled out (-DTOBY_NO_STATISTICS), pipelined 64 B at 1 and 64
# connections. The two binaries run alternately, ROUNDS times each (default
# 5), one measurement per round; the medians are compared.
#
#   bash Scripts/statistics-overhead.sh          # from the package root
#   ROUNDS=9 bash Scripts/statistics-overhead.sh
#
# The second build goes to .build/no-statistics (a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-5}"
swift build -c release --product benchmarks >/dev/null
swift build -c release --product benchmarks --scratch-path .build/no-statistics \
    -Xswiftc -DTOBY_NO_STATISTICS >/dev/null
counted=.build/release/benchmarks
compiled_out=.build/no-statistics/release/benchmarks
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for round in $(seq 1 "$rounds"); do
    for build in counted compiled_out; do
        binary="${!build}"
        "$binary" --filter observability --implementation "as shipped" --runs 1 \
            --json "$work/$build-$round.json" >/dev/null 2>&1
        echo "round $round/$rounds: $build done" >&2
    done
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
figures = {}
for build in ("counted", "compiled_out"):
    for round in range(1, rounds + 1):
        with open(f"{work}/{build}-{round}.json") as f:
            for scenario in json.load(f)["scenarios"]:
                for row in scenario["rows"]:
                    if not row["ok"]:
                        sys.exit(f"{build} round {round}: {scenario['id']} failed: {row.get('error')}")
                    figures.setdefault((scenario["id"], build), []).append(row["median"]["msgs_per_s"])
for scenario in sorted({key[0] for key in figures}):
    counted = statistics.median(figures[(scenario, "counted")])
    out = statistics.median(figures[(scenario, "compiled_out")])
    ratio = counted / out
    verdict = "met" if ratio >= 0.98 else "MISSED"
    print(f"{scenario}: statistics counted {counted / 1e6:.2f}M msgs/s, compiled out {out / 1e6:.2f}M msgs/s: "
          f"{ratio:.3f}x (>= 0.98x: {verdict}; medians of {rounds} alternating rounds)")
PY
