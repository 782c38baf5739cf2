#!/usr/bin/env bash
# Measures `toby echo` from outside, beside a C epoll echo (Scripts/cecho.c,
# raw bytes, a loop per thread): Scripts/tobyload.c loads each server in
# alternating runs (ROUNDS of each, default 3, DURATION seconds each,
# default 3), and the medians are compared for pipelined 64 B at 1 and 64
# connections and one-way 1 MiB, for every `--api` (APIS, default
# "handler async blocking"). Both servers get THREADS threads (default: the
# number of cores); the load generator shares the machine with them.
#
#   bash Scripts/compare-echo.sh        # from the package root
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
duration="${DURATION:-3}"
apis="${APIS:-handler async blocking}"
threads="${THREADS:-$(nproc)}"
swift build -c release --product toby >/dev/null
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$work/tobyload" Scripts/tobyload.c
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$work/cecho" Scripts/cecho.c

start() { # name, command...
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q "listening on" "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
    sed -n 's/^listening on 127.0.0.1://p' "$work/$name.out" >"$work/$name.port"
}
start cecho "$work/cecho" -t "$threads"
for api in $apis; do
    # --api blocking has a thread per connection instead of loops.
    loops=(--threads "$threads")
    [ "$api" = blocking ] && loops=()
    start "toby-$api" .build/release/toby echo --port 0 --api "$api" --grace 0 "${loops[@]}"
done

cases=(
    "pipeline-1|-m pipeline -c 1 -w 256"
    "pipeline-64|-m pipeline -c 64 -w 64"
    "one-way-1MiB|-m one-way -c 1 -s 1048576"
)
for round in $(seq 1 "$rounds"); do
    for entry in "${cases[@]}"; do
        IFS='|' read -r name load <<<"$entry"
        for server in cecho $(for api in $apis; do echo "toby-$api"; done); do
            # shellcheck disable=SC2086
            "$work/tobyload" -p "$(cat "$work/$server.port")" $load -d "$duration" >>"$work/load-$server-$name"
        done
    done
    echo "round $round/$rounds done" >&2
done

python3 - "$work" "$apis" "${cases[@]}" <<'PY'
import statistics, sys
work, apis, cases = sys.argv[1], sys.argv[2].split(), [c.split("|")[0] for c in sys.argv[3:]]
def median(server, case):
    rows = [dict(kv.split("=") for kv in line.split()) for line in open(f"{work}/load-{server}-{case}")]
    return statistics.median(float(r["msgs_per_s"]) for r in rows)
print("tobyload against each server; medians of alternating runs; msgs/s (ratio to the C echo)")
print(f"{'case':<14} {'C echo':>12} " + " ".join(f"{'toby --api ' + a:>26}" for a in apis))
for case in cases:
    base = median("cecho", case)
    cells = []
    for api in apis:
        rate = median(f"toby-{api}", case)
        cells.append(f"{rate:>18,.0f} ({rate / base:4.2f})")
    print(f"{case:<14} {base:>12,.0f} " + " ".join(cells))
PY
