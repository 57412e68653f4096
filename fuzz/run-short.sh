#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short while (FUZZ_SECONDS, default 20) from
# its committed seed corpus: keeps the targets buildable and catches a crash that creeps
# into the code they cover. Stable toolchain, so no sanitizer (`-s none`, see README.md).
# Fails when the build fails or a target crashes, leaks past its limits or times out; the
# input that did it is left under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-20}
target_dir=${FUZZ_TARGET_DIR:-target}
# FUZZ_DEV=1 builds without optimisations: a few minutes instead of ten on 2 cores, enough
# for a smoke run (CI); long runs want the optimised build.
profile=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then
    profile=(--dev)
fi
export CARGO_TERM_COLOR=never

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz --version 0.13.2
fi

echo "== cargo fuzz build (-s none)"
cargo fuzz build -s none "${profile[@]}" --target-dir "$target_dir"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
    echo "== fuzz $target for ${seconds}s"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [ -f "dict/$target.dict" ]; then
        args+=(-dict="dict/$target.dict")
    fi
    # New inputs go to a scratch directory (the first one given), not the committed corpus.
    mkdir -p "$work/$target"
    if ! cargo fuzz run -s none "${profile[@]}" --target-dir "$target_dir" "$target" \
        "$work/$target" "corpus/$target" -- "${args[@]}" >"$work/$target.log" 2>&1; then
        tail -n 60 "$work/$target.log"
        echo "fuzz target $target FAILED (input under fuzz/artifacts/$target/)"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$work/$target.log" || true
    grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/$target.log" | tail -n 1 || true
done
echo "== all fuzz targets ran without a crash"
