#!/usr/bin/env bash
# Builds and runs the CTobyFrame fuzz targets.
#
#   bash Fuzz/run.sh [SECONDS]      (default 60 seconds per target)
#
# Steps:
#   1. Fuzz/check_c_warnings.sh: -Wall -Wextra -Wpedantic -Werror with gcc and
#      clang, and a gcc ASan+UBSan / clang UBSan replay of the seed corpus;
#   2. builds fuzz_reader and fuzz_writer with
#      clang -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined
#      -fno-sanitize-recover=all into Fuzz/build/ (git-ignored);
#   3. copies the committed seeds Fuzz/corpus/<target> to a fresh
#      Fuzz/corpus-work/<target> (git-ignored) and runs each target for
#      SECONDS with -max_total_time, so the committed corpus stays as it is;
#   4. runs a UBSan-only (no ASan) build of fuzz_reader over the grown
#      corpus and then fuzzes it for a while longer;
#   5. replays the grown corpora through the gcc ASan+UBSan builds;
#   6. prints llvm-cov line/branch coverage of the core by those corpora.
#
# Prints executions and coverage (cov:/ft:) per target and exits non-zero
# on any crash, sanitizer report, timeout or build failure. Crash inputs go
# to Fuzz/build/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in
    '' | *[!0-9]*) echo "usage: bash Fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
UBSAN_SECONDS=$(( SECONDS_PER_TARGET / 4 > 5 ? SECONDS_PER_TARGET / 4 : 5 ))

INC=(-I Sources/CTobyFrame/include -I Sources/CTobyFrame)
CORE=(Sources/CTobyFrame/toby_reader.c Sources/CTobyFrame/toby_writer.c Sources/CTobyFrame/toby_prefix.c)
EXTRA=(${FUZZ_CFLAGS:-})  # e.g. FUZZ_CFLAGS=-DSOMETHING for experiments
LD=()
command -v ld.lld >/dev/null && LD=(-fuse-ld=lld)  # gold prints pages of ASan notes

status=0
fail() { echo "run: FAIL: $*"; status=1; }

echo "== 1. compile checks"
rm -rf Fuzz/corpus-work
bash Fuzz/check_c_warnings.sh || { echo "run: FAIL: compile checks"; exit 1; }

echo "== 2. build"
mkdir -p Fuzz/build/artifacts
build() { # name, sanitizers, source
    clang -std=c11 -O1 -g -Wall -Wextra -Werror "${LD[@]}" -fsanitize="$2" -fno-sanitize-recover=all \
        "${EXTRA[@]}" "${INC[@]}" "$3" "${CORE[@]}" -o "Fuzz/build/$1" >"Fuzz/build/$1.build.log" 2>&1 ||
        { cat "Fuzz/build/$1.build.log"; echo "run: FAIL: building $1"; exit 1; }
    echo "built Fuzz/build/$1 (-fsanitize=$2)"
}
build fuzz_reader fuzzer,address,undefined Fuzz/fuzz_reader.c
build fuzz_writer fuzzer,address,undefined Fuzz/fuzz_writer.c
build fuzz_reader_ubsan fuzzer,undefined Fuzz/fuzz_reader.c

# Runs one libFuzzer binary; prints and records its final numbers.
summary=()
fuzz() { # label, binary, corpus dir, seconds
    local label=$1 bin=$2 dir=$3 secs=$4 log="Fuzz/build/$1.log"
    echo "-- $label: ${secs}s over $dir"
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
        "Fuzz/build/$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="Fuzz/build/artifacts/$label-" "$dir" >"$log" 2>&1
    local rc=$?
    local execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    local line
    line=$(printf '%-18s execs %-10s cov %-5s ft %-6s corpus %-5s exit %s' \
        "$label" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$rc")
    summary+=("$line")
    echo "$line"
    if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|runtime error|check failed' "$log"; then
        grep -E 'check failed|runtime error|ERROR:|SUMMARY|Test unit written' "$log" | head -20
        fail "$label (log: $log)"
    fi
}

echo "== 3. fuzz ($SECONDS_PER_TARGET s per target)"
for t in reader writer; do
    mkdir -p "Fuzz/corpus-work/$t"
    cp Fuzz/corpus/$t/* "Fuzz/corpus-work/$t/"
    fuzz "fuzz_$t" "fuzz_$t" "Fuzz/corpus-work/$t" "$SECONDS_PER_TARGET"
done

echo "== 4. UBSan-only reader build"
fuzz fuzz_reader_ubsan fuzz_reader_ubsan Fuzz/corpus-work/reader "$UBSAN_SECONDS"

echo "== 5. gcc ASan+UBSan and clang UBSan replay of the grown corpora"
bash Fuzz/check_c_warnings.sh | grep -E 'ran|OK' || fail "replay of Fuzz/corpus-work"

echo "== 6. source coverage of the core by the grown corpora (llvm-cov)"
BIN=$(dirname "$(command -v clang)")
if [ -x "$BIN/llvm-profdata" ] && [ -x "$BIN/llvm-cov" ]; then
    for t in reader writer; do
        clang -std=c11 -O0 -g -fprofile-instr-generate -fcoverage-mapping "${EXTRA[@]}" "${INC[@]}" \
            Fuzz/fuzz_$t.c Fuzz/standalone_main.c "${CORE[@]}" -o "Fuzz/build/cov_$t" &&
            LLVM_PROFILE_FILE="Fuzz/build/cov_$t.profraw" "Fuzz/build/cov_$t" "Fuzz/corpus-work/$t" >/dev/null ||
            fail "coverage replay of $t"
    done
    "$BIN/llvm-profdata" merge -o Fuzz/build/cov.profdata Fuzz/build/cov_reader.profraw Fuzz/build/cov_writer.profraw &&
        "$BIN/llvm-cov" report Fuzz/build/cov_reader -object Fuzz/build/cov_writer \
            -instr-profile=Fuzz/build/cov.profdata "${CORE[@]}" | sed 's/^/cov: /'
else
    echo "cov: llvm-cov/llvm-profdata not next to $(command -v clang); skipped"
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
    echo "run: FAILED (crash inputs in Fuzz/build/artifacts/)"
else
    echo "run: OK"
fi
exit "$status"
