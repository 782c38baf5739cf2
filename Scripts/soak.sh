#!/usr/bin/env bash
# Soak test for `toby echo` (not part of CI).
#
#   bash Scripts/soak.sh MINUTES
#
# Builds `toby` in release (own scratch path .build-soak), starts
# `toby echo --port 0 --max-frame 8388608` on 127.0.0.1, and runs
# Scripts/soak_client.py against it for MINUTES: 32 threads of connections
# sending messages of 0 B to 4 MiB, pipelined, each echo checked byte for
# byte, with random abrupt closes and frames split across delayed writes.
# Meanwhile it samples the server's VmRSS every second. Then it sends the
# server SIGTERM, checks that it exits with status 0, and prints a report.
#
# Exit status 0 only if no message was lost or corrupted, the client saw no
# error, and the server stayed up, printed exactly one stdout line and exited
# 0 on SIGTERM.
#
# Environment (optional):
#   TOBY=/path/to/toby   use this binary instead of building one
#   SOAK_SEED=N          the client's seed (default: random; printed)
#   SOAK_THREADS=N       client threads (default 32)
#   SOAK_BYTE_ORDER=big  length prefix byte order on both ends (default little)
#   SOAK_API=async       the server API: handler (default), async or blocking
#
# It also fails if the server's RSS two seconds after the load is more than
# twice its RSS at start (memory that the load left behind).
set -euo pipefail

usage() { echo "usage: bash Scripts/soak.sh MINUTES   (e.g. 1, 10, 0.5)" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
MINUTES=$1
[[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || usage
SECONDS_OF_TRAFFIC=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
[[ $SECONDS_OF_TRAFFIC -ge 1 ]] || usage

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1   # loopback only
MAX_FRAME=8388608
THREADS=${SOAK_THREADS:-32}
BYTE_ORDER=${SOAK_BYTE_ORDER:-little}
API=${SOAK_API:-handler}
[[ $API == handler || $API == async || $API == blocking ]] || usage
[[ $BYTE_ORDER == little || $BYTE_ORDER == big ]] || usage
SEED=${SOAK_SEED:-$(( (RANDOM << 15) | RANDOM ))}
WORK=$(mktemp -d /tmp/toby-soak.XXXXXX)

server_pid=""
client_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $client_pid ]] && kill -0 "$client_pid" 2>/dev/null; then
    kill -TERM "$client_pid" 2>/dev/null || true
  fi
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
status_kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status" 2>/dev/null || true; }

# --- build ---------------------------------------------------------------
if [[ -z ${TOBY:-} ]]; then
  log "building toby (release, scratch path .build-soak)"
  swift build -c release --product toby --package-path "$ROOT" --scratch-path "$ROOT/.build-soak" >&2
  TOBY="$(swift build -c release --product toby --package-path "$ROOT" --scratch-path "$ROOT/.build-soak" --show-bin-path)/toby"
fi
[[ -x $TOBY ]] || { echo "soak: no toby binary at $TOBY" >&2; exit 1; }

# --- server --------------------------------------------------------------
"$TOBY" echo --api "$API" --host "$HOST" --port 0 --max-frame "$MAX_FRAME" --byte-order "$BYTE_ORDER" >"$WORK/server.out" 2>"$WORK/server.err" &
server_pid=$!
port=""
for _ in $(seq 300); do
  if [[ $(wc -l <"$WORK/server.out") -ge 1 ]]; then
    line=$(head -n 1 "$WORK/server.out")
    if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
      port=${BASH_REMATCH[1]}
    else
      echo "soak: unexpected first line from toby echo: '$line'" >&2; exit 1
    fi
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || { echo "soak: toby echo exited early:" >&2; cat "$WORK/server.err" >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "soak: toby echo printed no 'listening on' line in 30 s" >&2; exit 1; }
rss_start=$(status_kb VmRSS)
log "toby echo (pid $server_pid) listening on $HOST:$port; client: $THREADS threads, seed $SEED, ${SECONDS_OF_TRAFFIC}s"

# --- client, with RSS sampling -------------------------------------------
python3 "$ROOT/Scripts/soak_client.py" --host "$HOST" --port "$port" --seconds "$SECONDS_OF_TRAFFIC" \
  --threads "$THREADS" --seed "$SEED" --byte-order "$BYTE_ORDER" >"$WORK/client.out" 2>"$WORK/client.err" &
client_pid=$!

max_rss=0
server_died=""
timeline=()
limit=$(( SECONDS_OF_TRAFFIC + 300 ))   # the client drains within seconds; this is only a backstop
start=$(date +%s)
while kill -0 "$client_pid" 2>/dev/null; do
  elapsed=$(( $(date +%s) - start ))
  rss=$(status_kb VmRSS)
  if [[ -z $rss ]]; then
    if [[ -z $server_died ]]; then server_died="after ${elapsed}s"; log "server is gone ($server_died)"; fi
  else
    if (( rss > max_rss )); then max_rss=$rss; fi
    if (( elapsed >= ${#timeline[@]} * 60 )); then timeline+=("$(( elapsed / 60 ))m:$(( rss / 1024 ))"); fi
  fi
  if (( elapsed > limit )); then
    log "client still running after ${elapsed}s; stopping it"
    kill -TERM "$client_pid" 2>/dev/null || true
  fi
  sleep 1
done
client_rc=0
wait "$client_pid" || client_rc=$?
client_pid=""

# --- server: memory after the load, then SIGTERM ---------------------------
sleep 2
rss_idle=$(status_kb VmRSS)
hwm=$(status_kb VmHWM)
threads_idle=$(status_kb Threads)
if [[ -n $rss_idle && $rss_idle -gt $max_rss ]]; then max_rss=$rss_idle; fi
server_rc=0
stop_seconds=""
if [[ -z $server_died ]]; then
  # A watchdog kills the server if SIGTERM has not ended it within 15 s.
  ( trap 'kill "$sleep_pid" 2>/dev/null; exit 0' TERM
    sleep 15 & sleep_pid=$!
    wait "$sleep_pid"
    echo "server did not exit within 15 s of SIGTERM; killed" >"$WORK/watchdog"
    kill -KILL "$server_pid" 2>/dev/null ) >/dev/null 2>&1 &
  watchdog_pid=$!
  t0=$(date +%s%N)
  kill -TERM "$server_pid"
  wait "$server_pid" || server_rc=$?
  stop_seconds=$(awk -v n=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.2f", n / 1e9 }')
  kill -TERM "$watchdog_pid" 2>/dev/null || true
  wait "$watchdog_pid" 2>/dev/null || true
else
  wait "$server_pid" || server_rc=$?
fi
server_pid=""

# --- report ----------------------------------------------------------------
stdout_lines=$(wc -l <"$WORK/server.out")
stderr_lines=$(wc -l <"$WORK/server.err")
failures=()
[[ $client_rc -eq 0 ]] || failures+=("client exit status $client_rc (lost/corrupted/errors, see above)")
[[ -z $server_died ]] || failures+=("server died during the run ($server_died)")
[[ ! -s $WORK/watchdog ]] || failures+=("$(cat "$WORK/watchdog")")
[[ $server_rc -eq 0 ]] || failures+=("server exit status $server_rc (expected 0 after SIGTERM)")
[[ $stdout_lines -eq 1 ]] || failures+=("server printed $stdout_lines stdout lines (expected 1)")
[[ -s $WORK/client.out ]] || failures+=("client printed no report")
if [[ -n ${rss_idle:-} && -n ${rss_start:-} ]] && (( rss_idle > 2 * rss_start )); then
  failures+=("RSS after the load $(mib "$rss_idle") is more than twice the $(mib "$rss_start") at start")
fi

echo "=== toby echo --api $API soak: $MINUTES minute(s), $HOST:$port, --max-frame $MAX_FRAME --byte-order $BYTE_ORDER ==="
cat "$WORK/client.out"
if [[ -s $WORK/client.err ]]; then echo "client stderr:"; sed 's/^/  /' "$WORK/client.err" | head -n 20; fi
echo "server peak RSS: VmHWM $(mib "${hwm:-0}"), max VmRSS sampled each second $(mib "$max_rss")"
echo "server RSS: $(mib "${rss_start:-0}") at start, $(mib "${rss_idle:-0}") idle after the load ($threads_idle threads)"
echo "server RSS by minute (MiB): ${timeline[*]:-none}"
echo "server stderr: $stderr_lines lines (one per connection it dropped); by kind:"
sed -E 's/^toby: [^ ]+: //; s/[0-9]+/N/g' "$WORK/server.err" | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/  /'
if [[ -n $stop_seconds ]]; then
  echo "server exit status after SIGTERM: $server_rc (exited ${stop_seconds}s after the signal)"
else
  echo "server exit status: $server_rc (it died before SIGTERM)"
fi
echo "logs: $WORK"
if [[ ${#failures[@]} -eq 0 ]]; then
  echo "RESULT: PASS"
else
  for f in "${failures[@]}"; do echo "RESULT: FAIL: $f"; done
  exit 1
fi
