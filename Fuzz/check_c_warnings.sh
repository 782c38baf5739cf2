#!/usr/bin/env bash
# Compile checks for the C core, then a sanitizer replay of the seed corpus.
#
#   1. every Sources/CTobyFrame/*.c with gcc and clang, -std=c11 -Wall -Wextra
#      -Wpedantic -Werror, at -O0 and -O2 (-O2 enables gcc's flow warnings);
#   2. the fuzz harnesses themselves with the same flags;
#   3. the reader and writer harnesses linked with standalone_main.c (no
#      libFuzzer) under gcc -fsanitize=address,undefined and clang
#      -fsanitize=undefined, -fno-sanitize-recover=all, replaying
#      Fuzz/corpus/* (and Fuzz/corpus-work/* when present).
#
# Exits non-zero on the first warning, build failure or sanitizer report.
# Usage: bash Fuzz/check_c_warnings.sh
set -euo pipefail
cd "$(dirname "$0")/.."

INC=(-I Sources/CTobyFrame/include -I Sources/CTobyFrame)
CORE=(Sources/CTobyFrame/toby_reader.c Sources/CTobyFrame/toby_writer.c Sources/CTobyFrame/toby_prefix.c)
WARN=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
OUT=Fuzz/build/check
mkdir -p "$OUT"

for cc in gcc clang; do
    command -v "$cc" >/dev/null || { echo "check: $cc not found" >&2; exit 1; }
    for opt in -O0 -O2; do
        for f in Sources/CTobyFrame/*.c; do
            "$cc" "${WARN[@]}" "$opt" "${INC[@]}" -c "$f" -o "$OUT/$(basename "$f" .c).$cc.o"
        done
        for f in Fuzz/fuzz_reader.c Fuzz/fuzz_writer.c Fuzz/standalone_main.c; do
            "$cc" "${WARN[@]}" "$opt" "${INC[@]}" -c "$f" -o "$OUT/$(basename "$f" .c).$cc.o"
        done
    done
    echo "check: $cc -Wall -Wextra -Wpedantic -Werror (-O0, -O2): clean ($(ls Sources/CTobyFrame/*.c | wc -l) core files + 3 harness files)"
done

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
for t in reader writer; do
    dirs=(Fuzz/corpus/$t)
    [ -d Fuzz/corpus-work/$t ] && dirs+=(Fuzz/corpus-work/$t)
    gcc "${WARN[@]}" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all "${INC[@]}" \
        Fuzz/fuzz_$t.c Fuzz/standalone_main.c "${CORE[@]}" -o "$OUT/replay_${t}_gcc_asan_ubsan"
    clang "${WARN[@]}" -O1 -g -fsanitize=undefined,integer -fno-sanitize=unsigned-integer-overflow,unsigned-shift-base \
        -fno-sanitize-recover=all "${INC[@]}" \
        Fuzz/fuzz_$t.c Fuzz/standalone_main.c "${CORE[@]}" -o "$OUT/replay_${t}_clang_ubsan"
    for bin in "$OUT/replay_${t}_gcc_asan_ubsan" "$OUT/replay_${t}_clang_ubsan"; do
        "$bin" "${dirs[@]}" | sed "s|^$OUT/|check: |"
    done
done
echo "check: OK"
