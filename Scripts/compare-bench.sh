#!/usr/bin/env bash
# Cross-checks `toby bench` against Scripts/tobyload.c, an independent C load
# generator written from the wire format alone (a sender and a receiver
# thread per connection): `toby bench --api blocking`, `toby bench --api
# async` and tobyload load the same `toby echo` in alternating runs (ROUNDS
# of each, default 3, DURATION seconds each, default 3), and the medians are
# compared for pipeline at 1 and 64 connections, ping-pong and one-way
# 1 MiB. API=async or blocking picks the server's --api (default handler).
#
#   bash Scripts/compare-bench.sh        # from the package root
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
duration="${DURATION:-3}"
api="${API:-handler}"
swift build -c release --product toby >/dev/null
work="$(mktemp -d)"
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$work/tobyload" Scripts/tobyload.c
toby=.build/release/toby
"$toby" echo --port 0 --api "$api" --grace 0 >"$work/echo.out" 2>"$work/echo.err" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$work/echo.out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -n 's/^listening on 127.0.0.1://p' "$work/echo.out")"

cases=(
    "pipeline-1|--mode pipeline --connections 1 --in-flight 64|-m pipeline -c 1 -w 64"
    "pipeline-64|--mode pipeline --connections 64 --in-flight 64|-m pipeline -c 64 -w 64"
    "ping-pong|--mode ping-pong --connections 1|-m ping-pong -c 1"
    "one-way-1MiB|--mode one-way --connections 1 --size 1MiB|-m one-way -c 1 -s 1048576"
)
for round in $(seq 1 "$rounds"); do
    for entry in "${cases[@]}"; do
        IFS='|' read -r name bench load <<<"$entry"
        for client in blocking async; do
            # shellcheck disable=SC2086
            "$toby" bench --port "$port" $bench --api "$client" --duration "${duration}s" --quiet --json \
                >>"$work/bench-$client-$name"
        done
        # shellcheck disable=SC2086
        "$work/tobyload" -p "$port" $load -d "$duration" >>"$work/load-$name"
    done
    echo "round $round/$rounds done" >&2
done

python3 - "$work" "$api" "${cases[@]}" <<'PY'
import json, statistics, sys
work, api, cases = sys.argv[1], sys.argv[2], [c.split("|")[0] for c in sys.argv[3:]]
print(f"toby echo --api {api}; medians of alternating runs; tobyload = Scripts/tobyload.c; msgs/s (p50 us)")
print(f"{'case':<14} {'bench blocking':>22} {'bench async':>22} {'tobyload':>22} {'blocking/load':>14} {'async/load':>11}")
def cell(rate, p50):
    return f"{rate:,.0f}" + ("" if p50 != p50 else f" ({p50:.0f})")
for name in cases:
    def medians(rows, number):
        rate = statistics.median(number(r["msgs_per_s"]) for r in rows)
        p50 = statistics.median(number(r["p50_us"]) for r in rows) if "p50_us" in rows[0] else float("nan")
        return rate, p50
    blocking = medians([json.loads(l) for l in open(f"{work}/bench-blocking-{name}")], float)
    asynchronous = medians([json.loads(l) for l in open(f"{work}/bench-async-{name}")], float)
    load = medians([dict(kv.split("=") for kv in l.split()) for l in open(f"{work}/load-{name}")], float)
    print(f"{name:<14} {cell(*blocking):>22} {cell(*asynchronous):>22} {cell(*load):>22} "
          f"{blocking[0] / load[0]:>14.2f} {asynchronous[0] / load[0]:>11.2f}")
PY
