#!/usr/bin/env bash
# The differential compatibility suite: ours and the Python reference (websockify 0.13.0)
# side by side, with the same command lines against the same real targets
# (tests/differential/). Checks docs/compatibility.md against what it observes.
#
#   scripts/differential.sh               # what CI runs
#   scripts/differential.sh --write-doc   # regenerate docs/compatibility.md after a change
#   scripts/differential.sh --only TEXT   # the cases whose name contains TEXT
#
# Installs what it needs: python3-venv and openssl (apt) if missing, the reference into a
# virtualenv under target/ (pip), and builds our release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip' 2>/dev/null || ! command -v openssl >/dev/null; then
  echo "differential: installing python3-venv and openssl" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv openssl) >&2
fi
venv=target/reference-venv
if ! [ -x "$venv/bin/websockify" ]; then
  echo "differential: installing the reference (websockify 0.13.0) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q websockify==0.13.0 numpy jwcrypto redis requests >&2
fi
# wsbench too: the same build as every script's (scripts/conformance.sh says why).
cargo build --release -q -p websockify -p wsbench
# The reference wraps programs with a rebind.so that its pip package does not ship (it is
# built with `make` from its repository). It gets ours, built by build.rs, which reads the
# same REBIND_OLD_PORT/REBIND_NEW_PORT: the wrap cases then compare the two wrappers.
shim=$(ls -t target/release/build/websockify-*/out/rebind.so | head -n 1)
mkdir -p "$venv/lib"
cp "$shim" "$venv/lib/rebind.so"

mode=(--check-doc docs/compatibility.md)
if [ "${1:-}" = "--write-doc" ]; then
  mode=(--write-doc docs/compatibility.md)
  shift
fi
exec python3 tests/differential/run.py --ours target/release/websockify \
  --ref "$venv/bin/websockify" "${mode[@]}" "$@"
