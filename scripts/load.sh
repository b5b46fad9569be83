#!/usr/bin/env bash
# Load: N concurrent proxied WebSocket connections, all echoing (checked byte for byte) through
# target/release/websockify to `wsbench echo-server`, on loopback only. Passes only if every
# connection opened and no error or corrupt byte was seen; reports throughput, round trips,
# and the proxy's RSS and open descriptors under load.
#
# Usage: scripts/load.sh [--short] [--conns N] [--duration S] [--size BYTES]
#   default: 8000 connections, 30 s measured (after a 15 s warm-up that opens them all)
#   --short: 1000 connections, 6 s measured, 4 s warm-up (CI)
#   --emfile: instead, start the proxy with `ulimit -n 64`, hold more connections than it
#             has descriptors for, and check that it neither spins (CPU < 1 s meanwhile)
#             nor dies, and serves normally once they are gone (~15 s)
# Binaries come from ${CARGO_TARGET_DIR:-target}/release (built if missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."

conns=8000 duration=30 warmup=15 size=1024 emfile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) conns=1000 duration=6 warmup=4 ;;
    --emfile) emfile=1 ;;
    --conns) conns=$2; shift ;;
    --duration) duration=$2; shift ;;
    --size) size=$2; shift ;;
    *) echo "usage: $0 [--short | --emfile] [--conns N] [--duration S] [--size BYTES]" >&2; exit 2 ;;
  esac
  shift
done

# Each connection costs the proxy two descriptors, the load generator and the target one each.
need=$((2 * conns + 1000))
ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "load: need $need open files, the hard limit is $(ulimit -Hn)" >&2
  exit 1
fi

# One build for both, as in every script (scripts/conformance.sh says why).
cargo build --release --quiet -p websockify -p wsbench
bin=${CARGO_TARGET_DIR:-target}/release
out=${CARGO_TARGET_DIR:-target}/load
mkdir -p "$out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

echo_port=$($bin/wsbench free-port)
$bin/wsbench echo-server --listen "127.0.0.1:$echo_port" --buf 16384 --lifetime 600 >/dev/null 2>&1 &
pids+=($!)
proxy_port=$($bin/wsbench free-port)
proxy_limit=$(ulimit -n)
[ "$emfile" = 1 ] && proxy_limit=64
(ulimit -n "$proxy_limit" && RUST_LOG=warn exec $bin/websockify "127.0.0.1:$proxy_port" "127.0.0.1:$echo_port") 2>"$out/proxy.log" &
proxy=$!
pids+=($proxy)
$bin/wsbench wait-port "127.0.0.1:$echo_port" >/dev/null
$bin/wsbench wait-port "127.0.0.1:$proxy_port" >/dev/null

rss() { awk '/^VmRSS/ {print $2}' "/proc/$proxy/status"; }
fds() { ls "/proc/$proxy/fd" | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy/stat"; }

if [ "$emfile" = 1 ]; then
  # 100 idle sessions want 200 descriptors; the proxy has 64. The ones it cannot accept time
  # out on our side (errors expected here); the proxy must back off, not spin, and survive.
  url="ws://127.0.0.1:$proxy_port/"
  ticks_before=$(cpu_ticks)
  $bin/wsbench load --url "$url" --mode idle --conns 100 --open-concurrency 100 --timeout 3 \
    --warmup 0 --duration 4 >"$out/emfile-flood.json" 2>"$out/emfile-flood.err" || true
  ticks=$(( $(cpu_ticks) - ticks_before ))
  refused=$(grep -c "accept failed" "$out/proxy.log" || true)
  echo "emfile: flood $(grep -o '"connected":[0-9]*' "$out/emfile-flood.json"), proxy CPU ${ticks} ticks," \
    "${refused} 'accept failed' log lines"
  kill -0 "$proxy" 2>/dev/null || { echo "emfile: FAILED: the proxy died" >&2; exit 1; }
  [ "$refused" -gt 0 ] || { echo "emfile: FAILED: descriptors never ran out (test is void)" >&2; exit 1; }
  [ "$ticks" -lt 100 ] || { echo "emfile: FAILED: the proxy spun (${ticks} ticks)" >&2; exit 1; }
  sleep 1
  if ! $bin/wsbench load --url "$url" --mode echo --conns 10 --size 1024 --check --warmup 1 \
    --duration 2 >"$out/emfile-after.json" 2>&1; then
    cat "$out/emfile-after.json" >&2
    echo "emfile: FAILED: no service after the flood" >&2
    exit 1
  fi
  echo "emfile: ok (serves again after running out of descriptors)"
  exit 0
fi
rss_idle=$(rss)

echo "load: $conns connections, ${size}-byte messages echoed for ${duration} s (warm-up ${warmup} s)"
began=$(date +%s)
$bin/wsbench load --url "ws://127.0.0.1:$proxy_port/" --mode echo --conns "$conns" \
  --size "$size" --pipeline 1 --check --warmup "$warmup" --duration "$duration" \
  --timeout "$((warmup + 10))" --label "load.sh" >"$out/load.json" 2>"$out/load.err" &
load=$!
pids+=($load)
rss_peak=0 fds_peak=0
while kill -0 "$load" 2>/dev/null; do
  r=$(rss) f=$(fds)
  [ "$r" -gt "$rss_peak" ] && rss_peak=$r
  [ "$f" -gt "$fds_peak" ] && fds_peak=$f
  sleep 1
done
status=0
wait "$load" || status=$?
took=$(($(date +%s) - began))
cat "$out/load.err" >&2

json=$(cat "$out/load.json")
field() { echo "$json" | grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2; }
connected=$(field connected)
errors=$(field errors)
corrupt=$(field corrupt)
echo "$json"
echo "load: connected ${connected}/${conns}, errors ${errors}, corrupt ${corrupt}," \
  "echoed $(field rx_mb_per_s) MB/s, $(field msgs_per_s) msg/s," \
  "rtt p50 $(field rtt_p50_us) us p99 $(field rtt_p99_us) us; run took ${took} s"
echo "load: proxy RSS idle ${rss_idle} KiB, peak under load ${rss_peak} KiB" \
  "($(( (rss_peak - rss_idle) * 1024 / conns )) bytes per connection); peak descriptors ${fds_peak}"
if [ "$status" -ne 0 ] || [ "$connected" != "$conns" ] || [ "$errors" != 0 ] || [ "$corrupt" != 0 ]; then
  echo "load: FAILED" >&2
  exit 1
fi
if ! kill -0 "$proxy" 2>/dev/null; then
  echo "load: FAILED: the proxy died" >&2
  exit 1
fi
echo "load: ok"
