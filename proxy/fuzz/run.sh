#!/usr/bin/env bash
# Builds every fuzz target and runs each for FUZZ_SECONDS seconds (default 30), starting from
# the committed seeds in corpus/<target>/. Exits non-zero on the first target that crashes,
# printing the crashing input's path. Usage: run.sh [target...] (default: all).
#
# cargo-fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. No sanitizer: pgshroud has no unsafe code, and ASan would halve the executions
# per second on a small machine. What libFuzzer finds beyond the seeds stays in
# target/corpus/<target>/ (ignored by git), so later runs on this machine start from it.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
# The instrumented build must not share a target directory with ordinary builds.
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never
seconds=${FUZZ_SECONDS:-30}

if ! command -v cargo-fuzz >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
export PATH="$HOME/.cargo/bin:$PATH"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets"
start=$(date +%s)
cargo fuzz build -s none
echo "== built in $(($(date +%s) - start)) s"

mkdir -p target/logs
for target in "${targets[@]}"; do
    echo "== fuzzing $target for $seconds s"
    mkdir -p "target/corpus/$target"
    log="target/logs/$target.log"
    # A slow input is not a finding here: the machine may be busy, so the timeout is generous.
    if cargo fuzz run -s none "$target" "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -n 1 || true
    else
        echo "!! $target failed; log: $PWD/$log"
        grep -E "panicked at|^SUMMARY|Test unit written to|ERROR: libFuzzer" "$log" || tail -n 20 "$log"
        artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | cut -d' ' -f5)
        if [ -n "$artifact" ]; then
            echo "!! crashing input: $artifact"
            echo "!! replay: (cd $PWD && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $target $artifact)"
        fi
        exit 1
    fi
done
echo "== all ${#targets[@]} targets ran $seconds s each without a crash"
