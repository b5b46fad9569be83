#!/usr/bin/env bash
# Regression guard for the relay's hot path: a deterministic cost figure, not a timing.
# Runs our proxy (--run-once) under callgrind while wsbench uploads a fixed number of bytes
# through it to an echo target (so the same bytes come back down: both directions), and
# compares the instructions executed per MB relayed with the committed baseline
# (.ci/perf-baseline). Fails when the figure exceeds baseline × tolerance.
#
# Usage: scripts/perf-guard.sh [--update] [--bytes N] [--tolerance F] [--no-build]
#   --update      write the measured figure as the new baseline
#   --bytes N     bytes uploaded (default 67108864 = 64 MiB; relayed twice: up and back down)
#   --tolerance F fail above baseline × F (default 1.30)
# Installs valgrind (apt-get) when missing. Loopback only; everything started is killed on
# exit; every wait is bounded. Takes well under a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

BYTES=67108864 TOL=1.30 UPDATE=0 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --update) UPDATE=1; shift ;;
    --bytes) BYTES=$2; shift 2 ;;
    --tolerance) TOL=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "perf-guard: unknown option $1" >&2; exit 2 ;;
  esac
done
BASELINE=.ci/perf-baseline
BIN="${CARGO_TARGET_DIR:-target}/release"

if ! command -v valgrind >/dev/null; then
  echo "perf-guard: installing valgrind" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind) >&2
fi
if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p websockify -p wsbench
fi

WORK=$(mktemp -d /tmp/perf-guard.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; done
  for pid in "${PIDS[@]:-}"; do if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ECHO_PORT=$("$BIN/wsbench" free-port)
PROXY_PORT=$("$BIN/wsbench" free-port)
"$BIN/wsbench" echo-server --listen "127.0.0.1:$ECHO_PORT" --lifetime 300 >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
"$BIN/wsbench" wait-port "127.0.0.1:$ECHO_PORT" --timeout 10 >/dev/null
# One worker thread: the figure must not depend on how work lands on threads.
RUST_LOG=warn TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  "$BIN/websockify" --run-once "127.0.0.1:$PROXY_PORT" "127.0.0.1:$ECHO_PORT" >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
"$BIN/wsbench" wait-port "127.0.0.1:$PROXY_PORT" --timeout 60 >/dev/null
"$BIN/wsbench" load --url "ws://127.0.0.1:$PROXY_PORT/" --mode upload --size 65536 \
  --bytes "$BYTES" --duration 120 --timeout 30 >"$WORK/load.json" 2>"$WORK/load.log" || {
  echo "perf-guard: load failed:" >&2; cat "$WORK/load.log" >&2; exit 1; }
# --run-once: the proxy exits when the session ends, and callgrind writes its counts then.
# It must end by itself, and well: a proxy that crashed or hung measured something else.
for _ in $(seq 300); do kill -0 "$PROXY" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PROXY" 2>/dev/null; then
  kill -TERM "$PROXY"
  echo "perf-guard: FAIL: the proxy did not exit after its --run-once session" >&2
  cat "$WORK/proxy.log" >&2
  exit 1
fi
status=0
wait "$PROXY" || status=$?
[ "$status" = 0 ] || {
  echo "perf-guard: FAIL: the proxy exited with status $status" >&2; cat "$WORK/proxy.log" >&2; exit 1; }
IR=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$WORK/callgrind.out" | head -1)
[ -n "$IR" ] || { echo "perf-guard: no callgrind summary" >&2; cat "$WORK/proxy.log" >&2; exit 1; }
# Relayed: the upload, and (about) the same bytes echoed back down.
PER_MB=$(awk -v ir="$IR" -v b="$BYTES" 'BEGIN { printf "%.0f", ir / (2 * b / 1e6) }')
echo "perf-guard: $IR instructions for 2 × $BYTES bytes relayed: $PER_MB instructions per MB"

if [ "$UPDATE" = 1 ]; then
  {
    echo "# Instructions (callgrind Ir) per MB relayed by scripts/perf-guard.sh: $BYTES bytes uploaded"
    echo "# through the proxy to an echo target and back. Refresh with scripts/perf-guard.sh --update."
    echo "instructions_per_mb=$PER_MB"
  } > "$BASELINE"
  echo "perf-guard: baseline written to $BASELINE"
  exit 0
fi
BASE=$(sed -n 's/^instructions_per_mb=//p' "$BASELINE" 2>/dev/null)
[ -n "$BASE" ] || { echo "perf-guard: no baseline in $BASELINE (run with --update)" >&2; exit 1; }
awk -v m="$PER_MB" -v b="$BASE" -v t="$TOL" 'BEGIN {
  printf "perf-guard: baseline %d per MB, now %.2f× of it (limit %.2f×)\n", b, m / b, t
  exit !(m <= b * t) }' || { echo "perf-guard: FAIL: the relay's hot path got markedly slower" >&2; exit 1; }
echo "perf-guard: ok"
