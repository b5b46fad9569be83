#!/usr/bin/env bash
# Instructions per MB relayed over wss:// (the relay method of scripts/perf-guard.sh, with TLS
# in front): the proxy (--run-once, one worker thread) under callgrind while wsbench uploads a
# fixed number of bytes over wss:// to an echo target, so the same bytes come back down.
# Deterministic, unlike timed runs. Usage: scripts/callgrind-wss.sh [PROXY_BINARY] [BYTES]
#   (default target/release/websockify, 67108864). Needs valgrind and a release wsbench (BIN=DIR: wsbench from DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
ours=${1:-target/release/websockify}
bytes=${2:-67108864}
bin=${BIN:-target/release}
work=$(mktemp -d /tmp/callgrind-wss.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
echo_port=$($bin/wsbench free-port)
proxy_port=$($bin/wsbench free-port)
$bin/wsbench echo-server --listen "127.0.0.1:$echo_port" --lifetime 600 >/dev/null 2>&1 &
pids+=($!)
$bin/wsbench wait-port "127.0.0.1:$echo_port" --timeout 10 >/dev/null
RUST_LOG=warn TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$ours" --run-once --cert "$work/cert.pem" --key "$work/key.pem" \
  "127.0.0.1:$proxy_port" "127.0.0.1:$echo_port" >"$work/proxy.log" 2>&1 &
proxy=$!
pids+=($proxy)
$bin/wsbench wait-port "127.0.0.1:$proxy_port" --timeout 60 >/dev/null
$bin/wsbench load --url "wss://127.0.0.1:$proxy_port/" --mode upload --size 65536 \
  --bytes "$bytes" --duration 300 --timeout 60 >"$work/load.json" 2>"$work/load.log" || {
  echo "callgrind-wss: load failed:" >&2; cat "$work/load.log" >&2; exit 1; }
for _ in $(seq 600); do kill -0 "$proxy" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$proxy" 2>/dev/null; then
  echo "callgrind-wss: the proxy did not exit after its --run-once session" >&2; exit 1
fi
ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$work/cg.out" | head -1)
[ -n "$ir" ] || { echo "callgrind-wss: no callgrind summary" >&2; cat "$work/proxy.log" >&2; exit 1; }
awk -v ir="$ir" -v b="$bytes" \
  'BEGIN { printf "callgrind-wss: %d instructions for 2 x %d bytes: %.0f instructions per MB\n", ir, b, ir / (2 * b / 1e6) }'
