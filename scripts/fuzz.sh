#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for SECONDS (default 30) on a copy of
# the committed corpus (fuzz/corpus/<target>/), so a run never grows the repository. Fails if
# any target crashes; the crashing input is left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]
#
# Works on a fresh machine with a stable toolchain: cargo-fuzz is installed if missing, and
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the nightly flags cargo-fuzz passes
# (-Zsanitizer=address and friends). See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

per_target=${1:-30}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! command -v cargo-fuzz >/dev/null 2>&1 && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "== building fuzz targets (release, debug assertions, AddressSanitizer)"
cargo fuzz build -a

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
targets=$(cargo fuzz list)
# A loop over nothing would pass: there must be targets, and each must really run.
[ -n "$targets" ] || { echo "fuzz: FAILED: cargo fuzz list found no targets"; exit 1; }
for target in $targets; do
    mkdir -p "$work/$target"
    cp corpus/"$target"/* "$work/$target/"
    log="$work/$target.log"
    if cargo fuzz run -a "$target" "$work/$target" -- \
        -max_total_time="$per_target" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
        cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
        if [ "${runs:-0}" -gt 0 ]; then
            echo "fuzz $target: ok, $runs runs in ${per_target}s, $cov"
        else
            echo "fuzz $target: FAILED: no runs reported"
            tail -n 40 "$log"
            failed+=("$target")
        fi
    else
        echo "fuzz $target: FAILED"
        tail -n 40 "$log"
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz: all targets ok"
