#!/usr/bin/env bash
# Mutation testing of the change (CI): the mutants cargo-mutants makes in the lines of src/
# that differ from BASE (default: the previous commit, HEAD~1; for a merge commit that is the
# whole merged branch), each against its file's narrow test command (scripts/mutants.sh).
# Fails when a mutant in the change is missed: a new branch that no test can tell from a broken
# one. See docs/testing.md.
#
#   scripts/mutants-diff.sh [BASE]
#   MUTANTS_CAP=SECONDS   wall-clock cap (default 600)
#
# The cap passes with a warning when reached with nothing missed so far (the mutants tested
# are still enforced; a large refactor must not block CI for an hour), and fails if any mutant
# tested before it was missed. Timeouts (a mutant that makes a test hang) pass with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD~1}
cap=${MUTANTS_CAP:-600}
out=target/mutants-diff

if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
  # A shallow clone (CI checkouts often are) has no parent: fetch one more commit.
  git fetch -q --deepen=1 2>/dev/null || true
  if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
    echo "mutants-diff: no $base to compare with (first commit, or no remote to deepen from): skipped"
    exit 0
  fi
fi

mapfile -t files < <(git diff --name-only --diff-filter=AMR "$base" -- 'src/*.rs' 'src/**/*.rs' | sort -u)
if [ ${#files[@]} -eq 0 ]; then
  echo "mutants-diff: no Rust source under src/ changed since $base"
  exit 0
fi
rm -rf "$out"
mkdir -p "$out"
git diff "$base" -- "${files[@]}" >"$out/change.diff"
echo "mutants-diff: ${#files[@]} file(s) changed since $(git rev-parse --short "$base"): ${files[*]}"

command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants

rc=0
MUTANTS_OUT=$out timeout -s INT "$cap" scripts/mutants.sh --in-diff "$out/change.diff" "${files[@]}" || rc=$?

missed=$(cat "$out"/*/mutants.out/missed.txt 2>/dev/null || true)
if [ -n "$missed" ]; then
  echo "mutants-diff: FAILED: mutants in the change that no test caught (add a test, or see"
  echo "docs/testing.md for equivalent mutants):"
  echo "$missed" | sed 's/^/  /'
  exit 2
fi
case $rc in
  0) echo "mutants-diff: every mutant in the change was caught" ;;
  3) echo "mutants-diff: WARNING: some mutants timed out (a hang the tests noticed only by the timeout):"
     cat "$out"/*/mutants.out/timeout.txt | sed 's/^/  /' ;;
  124 | 130) echo "mutants-diff: WARNING: the ${cap} s cap was reached before every mutant was tested;" \
       "none missed so far. Run scripts/mutants.sh on the changed files locally." ;;
  *) echo "mutants-diff: scripts/mutants.sh failed (status $rc)"; exit "$rc" ;;
esac
