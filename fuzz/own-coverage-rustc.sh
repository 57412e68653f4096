#!/usr/bin/env bash
# A RUSTC_WRAPPER that keeps libFuzzer's coverage instrumentation (the `sancov-module` pass
# cargo-fuzz adds to RUSTFLAGS) on perfvisor's own crates and the fuzz targets only:
# dependencies are built without it. They still run in full, but their branches no longer
# count as coverage, so libFuzzer's `cov:` is the edges of perfvisor's code (its generics
# and drop glue included) and "nothing new in its last minutes" can be read for our code
# alone, apart from a dependency's own parser (the `regex` crate behind `match_cmdline`
# finds new edges for hours). The fully instrumented build stays the default; this one is
# for judging whether a long run has levelled off:
#
#   cd fuzz
#   RUSTC_WRAPPER=$PWD/own-coverage-rustc.sh cargo fuzz build -s none --target-dir target-own config
#   target-own/x86_64-unknown-linux-gnu/release/config CORPUS... -dict=dict/config.dict
#
# Give it its own --target-dir: cargo does not rebuild when only the wrapper changes.
set -euo pipefail
rustc=$1
shift

# Ours: every package under the repository (perfvisor, perfvisor-actors, the fuzz targets);
# cargo names the package being built in CARGO_MANIFEST_DIR.
root=$(cd "$(dirname "$0")/.." && pwd)
own=false
case ${CARGO_MANIFEST_DIR:-} in
"$root" | "$root"/*) own=true ;;
esac

if $own; then
    exec "$rustc" "$@"
fi

args=()
skip_next=false
for arg in "$@"; do
    if $skip_next; then
        skip_next=false
        [ "$arg" = passes=sancov-module ] && continue
        args+=(-C "$arg")
        continue
    fi
    case $arg in
    -Cpasses=sancov-module) continue ;;
    -C)
        skip_next=true
        continue
        ;;
    esac
    args+=("$arg")
done
exec "$rustc" "${args[@]}"
