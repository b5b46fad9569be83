#!/usr/bin/env bash
# Resident memory per idle proxied connection: RSS of the proxy before and while N idle
# WebSocket connections (each with its target connection) are open.
# Usage: scripts/idle-memory.sh [--tls] [N] [PROXY_BINARY]
#   (default 8000, target/release/websockify; --tls: wss:// with a self-signed P-256 certificate;
#   BIN=DIR takes wsbench from DIR, to measure an older build with its own tools)
set -euo pipefail
cd "$(dirname "$0")/.."
scheme=ws
proxy_tls=()
if [ "${1:-}" = "--tls" ]; then
  shift
  scheme=wss
  certdir=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$certdir/key.pem" -out "$certdir/cert.pem" 2>/dev/null
  proxy_tls=(--cert "$certdir/cert.pem" --key "$certdir/key.pem")
fi
n=${1:-8000}
ours=${2:-target/release/websockify}
ulimit -n 20000
bin=${BIN:-target/release}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -z "${certdir:-}" ] || rm -rf "$certdir"
}
trap cleanup EXIT
echo_port=$($bin/wsbench free-port)
proxy_port=$($bin/wsbench free-port)
$bin/wsbench echo-server --listen "127.0.0.1:$echo_port" >/dev/null 2>&1 &
pids+=($!)
RUST_LOG=warn "$ours" "${proxy_tls[@]}" "127.0.0.1:$proxy_port" "127.0.0.1:$echo_port" >/dev/null 2>&1 &
proxy=$!
pids+=($proxy)
$bin/wsbench wait-port "127.0.0.1:$proxy_port" >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$proxy/status"; }
# Warm up: a few sessions, so the runtime's threads and pools exist before the baseline.
$bin/wsbench load --url "$scheme://127.0.0.1:$proxy_port/" --mode echo --conns 4 --size 65536 --duration 1 --warmup 0 >/dev/null 2>&1 || true
before=$(rss)
hold=20
$bin/wsbench load --url "$scheme://127.0.0.1:$proxy_port/" --mode idle --conns "$n" --duration "$hold" --warmup 0 --timeout 60 >/tmp/idle-load.json 2>/tmp/idle-load.err &
load=$!
pids+=($load)
# Sample once all connections are open and idle.
for _ in $(seq $((hold * 10))); do
  sleep 0.1
  open=$(ls /proc/$proxy/fd | wc -l)
  [ "$open" -ge $((2 * n)) ] && break
done
sleep 2
during=$(rss)
open=$(ls /proc/$proxy/fd | wc -l)
wait "$load" || true
echo "connections: $n  proxy fds open: $open"
echo "RSS before: ${before} KiB  with $n idle connections: ${during} KiB"
awk -v b="$before" -v d="$during" -v n="$n" 'BEGIN { printf "per idle connection: %.2f KiB\n", (d - b) / n }'
cat /tmp/idle-load.json
