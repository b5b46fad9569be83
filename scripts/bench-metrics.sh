#!/usr/bin/env bash
# Session churn with and without --metrics-listen: 16 clients looping connect, upgrade, one
# 64 B echo, close (`wsbench load --mode handshake`), through two release proxies to the same
# echo target, one of them with --metrics-listen (scraped once a second during its runs, as a
# busy Prometheus would), the runs interleaved, medians of RUNS. Loopback only; everything
# started is killed on exit.
# Usage: scripts/bench-metrics.sh [--runs N] [--duration S] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5 DURATION=3 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "bench-metrics: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$BUILD" = 1 ] && cargo build --release -q -p websockify && cargo build --release -q -p wsbench
BIN=${CARGO_TARGET_DIR:-target}/release
TMP=$(mktemp -d /tmp/bench-metrics.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

echo_port=$("$BIN/wsbench" free-port)
"$BIN/wsbench" echo-server --listen "127.0.0.1:$echo_port" >/dev/null 2>&1 &
pids+=($!)
start() { # args... -> prints the port
  local port; port=$("$BIN/wsbench" free-port)
  RUST_LOG=warn "$BIN/websockify" "$@" "127.0.0.1:$port" "127.0.0.1:$echo_port" \
    >"$TMP/proxy-$port.log" 2>&1 &
  pids+=($!)
  "$BIN/wsbench" wait-port "127.0.0.1:$port" >/dev/null
  echo "$port"
}
metrics_port=$("$BIN/wsbench" free-port)
plain=$(start)
with=$(start --metrics-listen "127.0.0.1:$metrics_port")

churn() { # port -> "sessions/s errors"
  "$BIN/wsbench" load --url "ws://127.0.0.1:$1/websockify" --mode handshake --conns 16 \
    --size 64 --duration "$DURATION" --warmup 1 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f %d" % (d["msgs_per_s"], d["errors"]))'
}
# curl, not a Python one-liner: starting Python every second cost the client side ~5 % of a
# core, which showed up as a cost of the metrics.
scrape() { curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$metrics_port/metrics"; }
declare -A results
for run in $(seq 1 "$RUNS"); do
  # The order alternates (ABBA...): a run after another one is not favoured.
  order="without with"
  [ $((run % 2)) = 0 ] && order="with without"
  for kind in $order; do
    if [ "$kind" = with ]; then
      ( while :; do scrape || true; sleep 1; done ) &
      scraper=$!
      out=$(churn "$with")
      kill "$scraper"; wait "$scraper" 2>/dev/null || true
    else
      out=$(churn "$plain")
    fi
    read -r rate errors <<<"$out"
    [ "$errors" = 0 ] || { echo "bench-metrics: $kind run $run had $errors errors" >&2; exit 1; }
    results[$kind]+="$rate "
    echo "run $run $kind --metrics-listen: $rate sessions/s (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
done
# The counters moved: the metrics were really on.
python3 - "http://127.0.0.1:$metrics_port/metrics" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
n = next(float(l.split()[1]) for l in text.splitlines() if l.startswith("websockify_sessions_total{"))
print(f"sessions counted with --metrics-listen: {n:.0f}")
PY
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
base=$(median "${results[without]}")
for kind in without with; do
  m=$(median "${results[$kind]}")
  printf '%-8s --metrics-listen %8s sessions/s  %5.2fx  (runs: %s)\n' "$kind" "$m" \
    "$(python3 -c "print($m/$base)")" "${results[$kind]}"
done
