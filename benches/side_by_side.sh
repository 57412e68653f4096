#!/usr/bin/env bash
# Side-by-side CPU harness: owns the comparison of two (or more) perfvisor builds watching the
# same targets *at the same time*, so both see the same host load and the same target
# behaviour (the sequential `cargo bench --bench overhead` runs one build after the other,
# and on a shared machine the load moves between them).
#
#   benches/side_by_side.sh [--n 100] [--seconds 300] [--warmup 60] TAG=BINARY [TAG=BINARY ...]
#
# Starts N `perfvisor-loadgen` targets (one burning 30 % of a core, one holding 128 MiB, the
# rest idle) and one `perfvisor run` per TAG=BINARY, each with its own database and port and
# `[[attach]]` for every target at a 1 s probe interval. After the warm-up it reads each
# perfvisor's utime+stime from /proc/PID/stat at the start and the end of the window and
# prints CPU % of one core, µs of CPU per second per daemon, and RSS at the end. Every
# process it starts is killed by its pid on exit (including Ctrl-C).
#
# Example (this build against an older one):
#   cargo build --release && benches/side_by_side.sh new=target/release/perfvisor old=/tmp/perfvisor-old
set -euo pipefail
cd "$(dirname "$0")/.."

n=100 seconds=300 warmup=60
builds=()
while [ $# -gt 0 ]; do
    case "$1" in
    --n) n=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    *=*) builds+=("$1"); shift ;;
    *) echo "unknown argument '$1'; accepted: --n N, --seconds S, --warmup S, TAG=BINARY" >&2; exit 2 ;;
    esac
done
if [ ${#builds[@]} -eq 0 ]; then
    echo "give at least one TAG=BINARY (e.g. new=target/release/perfvisor)" >&2
    exit 2
fi
loadgen=${LOADGEN:-target/release/perfvisor-loadgen}
if [ ! -x "$loadgen" ]; then
    echo "$loadgen is missing: run cargo build --release first (or set LOADGEN)" >&2
    exit 2
fi

dir=$(mktemp -d /tmp/perfvisor-side.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

targets=()
for i in $(seq 0 $((n - 1))); do
    case $i in
    0) "$loadgen" --cpu 0.3 >/dev/null 2>&1 & ;;
    1) "$loadgen" --hold-mib 128 >/dev/null 2>&1 & ;;
    *) "$loadgen" >/dev/null 2>&1 & ;;
    esac
    pids+=($!)
    targets+=($!)
done

declare -A monitor
port=$((29600 + RANDOM % 300))
for tb in "${builds[@]}"; do
    tag=${tb%%=*} bin=${tb#*=}
    mkdir -p "$dir/$tag"
    {
        printf '[supervisor]\ndatabase = "%s/%s/db.sqlite"\nprobe_interval = "1s"\n' "$dir" "$tag"
        printf 'listen = "127.0.0.1:%d"\n' "$port"
        i=0
        for p in "${targets[@]}"; do
            printf '\n[[attach]]\nname = "d%d"\npid = %d\n' "$i" "$p"
            i=$((i + 1))
        done
    } >"$dir/$tag/config.toml"
    "$bin" run --config "$dir/$tag/config.toml" >"$dir/$tag/log" 2>&1 &
    pids+=($!)
    monitor[$tag]=$!
    port=$((port + 1))
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
echo "N = $n targets, ${#builds[@]} builds side by side; warm-up ${warmup} s, window ${seconds} s, 1 s interval"
sleep "$warmup"
declare -A before
for tag in "${!monitor[@]}"; do
    if ! kill -0 "${monitor[$tag]}" 2>/dev/null; then
        echo "$tag exited during the warm-up:" >&2
        tail -5 "$dir/$tag/log" >&2
        exit 1
    fi
    before[$tag]=$(ticks "${monitor[$tag]}")
done
sleep "$seconds"
hz=$(getconf CLK_TCK)
printf '\n| build | CPU %% of one core | µs CPU per s per daemon | RSS MiB at the end |\n|---|---:|---:|---:|\n'
for tb in "${builds[@]}"; do
    tag=${tb%%=*}
    pid=${monitor[$tag]}
    d=$(($(ticks "$pid") - ${before[$tag]}))
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    awk -v t="$tag" -v d="$d" -v hz="$hz" -v s="$seconds" -v n="$n" -v rss="$rss" 'BEGIN {
        cpu = d / hz / s
        printf "| %s | %.3f | %.1f | %.1f |\n", t, cpu * 100, cpu * 1e6 / n, rss / 1024
    }'
done
