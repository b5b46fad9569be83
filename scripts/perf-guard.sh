#!/usr/bin/env bash
# Regression guard for the relay's hot path and for the way to it: deterministic cost figures,
# not timings, compared with the committed baseline (.ci/perf-baseline); fails when either
# exceeds baseline × tolerance.
# - Relay: our proxy (--run-once) under callgrind while wsbench uploads a fixed number of bytes
#   through it to an echo target (so the same bytes come back down: both directions):
#   instructions per MB relayed.
# - Handshake: the proxy under callgrind while wsbench makes sessions one after another
#   (connect, upgrade, one 64 B echo, close), twice, 20 and 220 sessions: the difference over
#   200 is the instructions per session (accept, HTTP, gate, target connect, 101, relay set-up,
#   close), start-up and exit cancelling out.
#
# Usage: scripts/perf-guard.sh [--update] [--bytes N] [--tolerance F] [--no-build]
#   --update      write the measured figures as the new baseline
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
  # One build for both, as in every script (scripts/conformance.sh says why).
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

# Instructions the proxy runs while wsbench makes $1 sessions, one after another.
handshake_ir() {
  local port proxy status ir
  port=$("$BIN/wsbench" free-port)
  RUST_LOG=warn TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind \
    --callgrind-out-file="$WORK/handshake-$1.out" \
    "$BIN/websockify" "127.0.0.1:$port" "127.0.0.1:$ECHO_PORT" >"$WORK/handshake-$1.log" 2>&1 &
  proxy=$!
  PIDS+=("$proxy")
  "$BIN/wsbench" wait-port "127.0.0.1:$port" --timeout 60 >/dev/null
  "$BIN/wsbench" load --url "ws://127.0.0.1:$port/" --mode handshake --conns 1 --size 64 \
    --sessions "$1" --duration 120 --timeout 30 >"$WORK/handshake-$1.json" 2>"$WORK/load.log" || {
    echo "perf-guard: handshake load failed:" >&2; cat "$WORK/load.log" >&2; return 1; }
  # No session is open: SIGTERM ends it at once, and callgrind writes its counts then.
  kill -TERM "$proxy"
  for _ in $(seq 300); do kill -0 "$proxy" 2>/dev/null || break; sleep 0.1; done
  status=0
  wait "$proxy" || status=$?
  [ "$status" = 0 ] || {
    echo "perf-guard: FAIL: the proxy exited with status $status" >&2
    cat "$WORK/handshake-$1.log" >&2; return 1; }
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$WORK/handshake-$1.out" | head -1)
  [ -n "$ir" ] || { echo "perf-guard: no callgrind summary" >&2; return 1; }
  echo "$ir"
}
FEW=$(handshake_ir 20)
MANY=$(handshake_ir 220)
PER_SESSION=$(awk -v a="$FEW" -v b="$MANY" 'BEGIN { printf "%.0f", (b - a) / 200 }')
echo "perf-guard: $FEW instructions for 20 sessions, $MANY for 220: $PER_SESSION instructions per session"

if [ "$UPDATE" = 1 ]; then
  {
    echo "# Instructions (callgrind Ir) per MB relayed by scripts/perf-guard.sh: $BYTES bytes uploaded"
    echo "# through the proxy to an echo target and back. Refresh with scripts/perf-guard.sh --update."
    echo "instructions_per_mb=$PER_MB"
    echo "# Instructions per session (connect, upgrade, one 64 B echo, close): 220 sessions less 20."
    echo "instructions_per_session=$PER_SESSION"
  } > "$BASELINE"
  echo "perf-guard: baseline written to $BASELINE"
  exit 0
fi
check() { # name measured key what
  local base
  base=$(sed -n "s/^$3=//p" "$BASELINE" 2>/dev/null)
  [ -n "$base" ] || { echo "perf-guard: no $3 in $BASELINE (run with --update)" >&2; return 1; }
  awk -v m="$2" -v b="$base" -v t="$TOL" -v n="$1" 'BEGIN {
    printf "perf-guard: %s: baseline %d, now %.2f× of it (limit %.2f×)\n", n, b, m / b, t
    exit !(m <= b * t) }' || { echo "perf-guard: FAIL: $4 got markedly slower" >&2; return 1; }
}
failed=0
check "instructions per MB relayed" "$PER_MB" instructions_per_mb "the relay's hot path" || failed=1
check "instructions per session" "$PER_SESSION" instructions_per_session "the handshake path" || failed=1
[ "$failed" = 0 ] || exit 1
echo "perf-guard: ok"
