#!/usr/bin/env bash
# Where a fuzz target's new coverage lands: runs one target with libFuzzer's `-print_pcs=1`,
# stamps every line of its output with the time, and when it ends (its `-max_total_time`, or
# Ctrl-C) says, per component (perfvisor's own code, each dependency, the standard
# library), how many new PCs it found and when it found the last, how many of perfvisor's
# sit on lines of its source (not standard-library code inlined into its functions), then
# lists the new PCs in perfvisor's own code. A target that still finds edges after hours
# can so be told apart: still exploring our code, or a dependency's parser (the `regex`
# crate behind `match_cmdline`, pco behind the chunk decoder).
#
#   fuzz/new-pcs.sh TARGET [libFuzzer arguments: corpus directories, -max_total_time=…]
#   fuzz/new-pcs.sh --report LOG      # the summary again, from a finished run's log
#
# Needs the optimised build (`cargo fuzz build -s none`; FUZZ_TARGET_DIR as given to
# `--target-dir`, default fuzz/target) and `addr2line` (Debian binutils). Without a
# sanitizer libFuzzer prints new PCs unsymbolised, so the script records where the binary
# was loaded and symbolises them itself. The log goes to NEW_PCS_LOG (default
# /tmp/new-pcs-TARGET.log). PCs are only printed after the corpus is loaded: the summary
# covers what the run found beyond its starting corpus.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

report() {
    local log=$1 bin base
    bin=$(sed -n 's/^# binary //p' "$log")
    base=$(sed -n 's/^# base //p' "$log")
    if [ -z "$bin" ] || [ -z "$base" ]; then
        echo "new-pcs: $log has no '# binary' and '# base' lines; expected a log this script wrote" >&2
        exit 2
    fi
    # time<TAB>offset, one line per new PC.
    { grep -a 'NEW_PC:' "$log" || true; } | while read -r time _ addr _; do
        printf '%s\t0x%x\n' "$time" $((addr - base))
    done >"$log.pcs"
    if [ ! -s "$log.pcs" ]; then
        echo "no new PCs after the corpus load"
        return
    fi
    # addr2line -a -f -i: per address, the address, then (function, file:line) pairs from
    # the innermost inlined frame to the function the code was compiled into.
    cut -f2 "$log.pcs" | addr2line -a -f -C -i -e "$bin" | awk -v root="$root/" '
        /^0x/ { if (n) emit(); n = 0; next }
        { frame[n++] = $0 }
        function emit(  fn, loc, inner, comp, s, rest, tok) {
            fn = frame[n - 2]; loc = frame[n - 1]
            if (index(loc, root) == 1) comp = "perfvisor"
            else if (match(loc, /index\.crates\.io-[0-9a-f]+\/[^\/]+/)) {
                s = substr(loc, RSTART, RLENGTH); sub(/.*\//, "", s); sub(/-[0-9][0-9.]*$/, "", s)
                comp = s
            } else {
                comp = "std"
                # A generic of the standard library: name the crate it was instantiated for
                # (the first path that starts a type argument, outside the standard library).
                rest = fn
                while (match(rest, /[<(, &][a-z_][a-z0-9_]*::/)) {
                    tok = substr(rest, RSTART + 1, RLENGTH - 3); rest = substr(rest, RSTART + RLENGTH)
                    if (tok !~ /^(core|alloc|std|hashbrown)$/) { comp = "std, for " tok; break }
                }
            }
            inner = frame[1]
            # "own" when the innermost frame is a line of our source; "other" for code of
            # another crate or of the standard library, inlined into our functions or not.
            own = index(inner, root) == 1 ? "own" : "other"
            sub(root, "", loc); sub(root, "", inner)
            if (n > 2) loc = loc " (innermost: " frame[0] " @ " inner ")"
            print comp "\t" fn " @ " loc "\t" own
        }
        END { if (n) emit() }' >"$log.sym"
    paste <(cut -f1 "$log.pcs") "$log.sym" >"$log.where"
    echo "new PCs by component (count, last found at):"
    awk -F'\t' '{ n[$2]++; last[$2] = $1 } END { for (c in n) printf "  %-32s %5d  %s\n", c, n[c], last[c] }' \
        "$log.where" | sort
    awk -F'\t' '$4 == "own" { n++; last = $1 } END {
        if (n) printf "  of these, on lines of perfvisor'"'"'s source (not inlined from elsewhere): %d, last at %s\n", n, last
        else print "  none on lines of perfvisor'"'"'s source (all inlined from elsewhere or in other crates)" }' "$log.where"
    echo "in perfvisor's own code:"
    awk -F'\t' '$2 == "perfvisor" || $2 ~ /^std, for perfvisor/ { print "  " $1 "  " $3 }' "$log.where" | cut -c1-200
}

if [ "${1:-}" = --report ]; then
    report "${2:?usage: new-pcs.sh --report LOG}"
    exit
fi

target=${1:?usage: new-pcs.sh TARGET [libFuzzer arguments]}
shift
bin=${FUZZ_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/$target
if [ ! -x "$bin" ]; then
    echo "new-pcs: no optimised build of '$target' at $bin; run 'cargo fuzz build -s none' first" >&2
    exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
log=${NEW_PCS_LOG:-/tmp/new-pcs-$target.log}
echo "# binary $bin" >"$log"

# The fuzzer's output goes through a stamping loop; $! is the fuzzer itself.
"$bin" -print_pcs=1 "$@" > >(
    trap '' INT
    while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done >>"$log"
) 2>&1 &
pid=$!
# Ctrl-C reaches the fuzzer (same process group), which stops and prints its stats; the
# summary below still runs.
trap '' INT
base=
for _ in $(seq 100); do
    base=$(awk -v bin="$bin" '$6 == bin { split($1, r, "-"); print "0x" r[1]; exit }' "/proc/$pid/maps" 2>/dev/null || true)
    [ -n "$base" ] && break
    sleep 0.05
done
if [ -z "$base" ]; then
    echo "new-pcs: could not read where $bin was loaded (pid $pid)" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
fi
echo "# base $base" >>"$log"
echo "fuzzing $target (pid $pid), log $log"
status=0
wait "$pid" || status=$?
sleep 0.2 # let the stamping loop write the last lines
grep -a 'cov:' "$log" | tail -n 1 | cut -c1-120 || true
report "$log"
exit "$status"
