#!/usr/bin/env bash
# Fuzz smoke test of veritrail-core, for `make test`: every cargo-fuzz target runs
# for FUZZ_SECS seconds (default 10), starting from the committed corpus in
# corpus/<target>/. Exits non-zero if any target crashes, hangs (-timeout) or runs
# out of memory (-rss_limit_mb); the failing input is left in artifacts/<target>/.
#
# Stable toolchain: no sanitizer (-s none); overflow checks and debug assertions
# are on, as in every cargo-fuzz build.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
core_dir="$(dirname "$fuzz_dir")"
secs="${FUZZ_SECS:-10}"
# Instrumented builds use their own RUSTFLAGS: sharing the workspace's target dir
# would invalidate its cache. An inherited CARGO_TARGET_DIR is respected.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/veritrail-fuzz-target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# New inputs go to a scratch directory (the first corpus directory libFuzzer is
# given), so a smoke run never adds files to the committed corpus.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$core_dir"
cargo fuzz build -s none --fuzz-dir "$fuzz_dir"

failed=()
for target in $(cargo fuzz list --fuzz-dir "$fuzz_dir"); do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    if cargo fuzz run "$target" -s none --fuzz-dir "$fuzz_dir" \
        "$scratch/$target" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
        echo "fuzz $target: ok, $(grep -E '^Done [0-9]+ runs' "$log" || echo 'no summary')"
    else
        mkdir -p "$fuzz_dir/artifacts/$target"
        cp "$log" "$fuzz_dir/artifacts/$target/smoke.log"
        {
            echo "fuzz $target: FAILED"
            grep -m 1 -A 1 'panicked at' "$log" || true
            grep -E 'ERROR: libFuzzer|^SUMMARY|Test unit written|^Error:' "$log" || true
            echo "full output: $fuzz_dir/artifacts/$target/smoke.log"
        } >&2
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz smoke failed: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
    exit 1
fi
