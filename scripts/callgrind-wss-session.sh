#!/usr/bin/env bash
# Instructions per wss:// session (TLS handshake, upgrade, one 64 B echo, close), the
# handshake method of scripts/perf-guard.sh with TLS in front: the proxy (one worker thread)
# under callgrind while wsbench makes sessions one after another, 20 and then 220 of them in
# two runs; the difference over 200 is the cost of one session, start-up left out.
# Usage: scripts/callgrind-wss-session.sh [PROXY_BINARY] [full|resumed]
#   (default target/release/websockify, resumed: one client session store, so every session
#   after the first resumes by ticket). BIN=DIR: wsbench from DIR (default target/release).
#   KEEP=1 keeps the callgrind files (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."
ours=${1:-target/release/websockify}
kind=${2:-resumed}
bin=${BIN:-target/release}
case "$kind" in
  resumed) resume=--tls-resume ;;
  full) resume= ;;
  *) echo "callgrind-wss-session: full or resumed, not $kind" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/callgrind-wss-session.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
echo_port=$($bin/wsbench free-port)
$bin/wsbench echo-server --listen "127.0.0.1:$echo_port" --lifetime 600 >/dev/null 2>&1 &
pids+=($!)
$bin/wsbench wait-port "127.0.0.1:$echo_port" --timeout 10 >/dev/null

# Instructions the proxy runs while wsbench makes $1 sessions, one after another.
session_ir() {
  local port proxy status ir
  port=$($bin/wsbench free-port)
  RUST_LOG=warn TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg-$1.out" \
    "$ours" --cert "$work/cert.pem" --key "$work/key.pem" \
    "127.0.0.1:$port" "127.0.0.1:$echo_port" >"$work/proxy-$1.log" 2>&1 &
  proxy=$!
  pids+=($proxy)
  $bin/wsbench wait-port "127.0.0.1:$port" --timeout 60 >/dev/null
  # shellcheck disable=SC2086
  $bin/wsbench load --url "wss://127.0.0.1:$port/" --mode handshake --conns 1 --size 64 \
    --sessions "$1" $resume --duration 120 --timeout 30 >"$work/load-$1.json" 2>"$work/load.log" || {
    echo "callgrind-wss-session: load failed:" >&2; cat "$work/load.log" >&2; return 1; }
  # No session is open: SIGTERM ends it at once, and callgrind writes its counts then.
  kill -TERM "$proxy"
  for _ in $(seq 300); do kill -0 "$proxy" 2>/dev/null || break; sleep 0.1; done
  status=0
  wait "$proxy" || status=$?
  [ "$status" = 0 ] || {
    echo "callgrind-wss-session: the proxy exited with status $status" >&2
    cat "$work/proxy-$1.log" >&2; return 1; }
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$work/cg-$1.out" | head -1)
  [ -n "$ir" ] || { echo "callgrind-wss-session: no callgrind summary" >&2; return 1; }
  echo "$ir"
}
few=$(session_ir 20)
many=$(session_ir 220)
awk -v a="$few" -v b="$many" -v k="$kind" \
  'BEGIN { printf "callgrind-wss-session: %s: %d instructions for 20 sessions, %d for 220: %.0f instructions per session\n", k, a, b, (b - a) / 200 }'
