#!/usr/bin/env bash
# Soak: churn through target/release/websockify for DURATION seconds, loopback only, and check
# that nothing leaks. Three loads run together against `wsbench echo-server`:
#   churn      CHURN connections, each looping connect + handshake + one echo + close
#   long-lived LONG connections echoing continuously (bytes checked) for the whole run
#   idle       IDLE connections opened at the start, held, and checked to still echo at the end
# The proxy's RSS and open descriptors are sampled after a warm-up (the baseline), every
# INTERVAL seconds, and once the load has stopped. Fails on any load error, if descriptors do
# not come back to the baseline (+FD_MARGIN), if the end RSS exceeds the baseline by more than
# RSS_MARGIN_KIB, or if RSS keeps growing (second half's peak above the first half's by more
# than GROWTH_KIB).
#
# Usage: scripts/soak.sh [--short] [--duration S]
#   default: 600 s; --short: 30 s (CI)
# Binaries come from ${CARGO_TARGET_DIR:-target}/release (built if missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600 interval=30
churn=64 long=32 idle=500
while [ $# -gt 0 ]; do
  case "$1" in
    --short) duration=30 interval=5 ;;
    --duration) duration=$2; shift ;;
    *) echo "usage: $0 [--short] [--duration S]" >&2; exit 2 ;;
  esac
  shift
done
FD_MARGIN=${FD_MARGIN:-4}
RSS_MARGIN_KIB=${RSS_MARGIN_KIB:-32768}
GROWTH_KIB=${GROWTH_KIB:-16384}

ulimit -n 8192 2>/dev/null || true
# One build for both, as in every script (scripts/conformance.sh says why).
cargo build --release --quiet -p websockify -p wsbench
bin=${CARGO_TARGET_DIR:-target}/release
out=${CARGO_TARGET_DIR:-target}/soak
mkdir -p "$out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

echo_port=$($bin/wsbench free-port)
$bin/wsbench echo-server --listen "127.0.0.1:$echo_port" --buf 16384 --lifetime $((duration + 300)) >/dev/null 2>&1 &
pids+=($!)
proxy_port=$($bin/wsbench free-port)
RUST_LOG=warn $bin/websockify "127.0.0.1:$proxy_port" "127.0.0.1:$echo_port" 2>"$out/proxy.log" &
proxy=$!
pids+=($proxy)
$bin/wsbench wait-port "127.0.0.1:$echo_port" >/dev/null
$bin/wsbench wait-port "127.0.0.1:$proxy_port" >/dev/null
url="ws://127.0.0.1:$proxy_port/"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$proxy/status"; }
fds() { ls "/proc/$proxy/fd" | wc -l; }

# Warm-up: the same kinds of load, briefly, so worker threads, buffer pools and allocator
# arenas exist before the baseline is taken.
$bin/wsbench load --url "$url" --mode handshake --conns "$churn" --size 4096 --warmup 0 --duration 2 >/dev/null 2>&1
$bin/wsbench load --url "$url" --mode echo --conns "$long" --size 16384 --pipeline 2 --warmup 0 --duration 2 >/dev/null 2>&1
sleep 2
rss_base=$(rss) fds_base=$(fds)
echo "soak: ${duration} s; churn ${churn}, long-lived ${long}, idle ${idle} connections"
echo "soak: baseline RSS ${rss_base} KiB, ${fds_base} descriptors"
samples="$out/samples.txt"
echo "t_s rss_kib fds" >"$samples"
echo "0 $rss_base $fds_base" >>"$samples"

began=$(date +%s)
$bin/wsbench load --url "$url" --mode handshake --conns "$churn" --size 4096 --warmup 0 \
  --duration "$duration" --label churn >"$out/churn.json" 2>"$out/churn.err" &
l1=$!
$bin/wsbench load --url "$url" --mode echo --conns "$long" --size 16384 --pipeline 2 --check \
  --warmup 0 --duration "$duration" --label long-lived >"$out/long.json" 2>"$out/long.err" &
l2=$!
$bin/wsbench load --url "$url" --mode idle --conns "$idle" --warmup 0 --duration "$duration" \
  --timeout 30 --label idle >"$out/idle.json" 2>"$out/idle.err" &
l3=$!
pids+=($l1 $l2 $l3)
next=$interval
while kill -0 $l1 2>/dev/null || kill -0 $l2 2>/dev/null || kill -0 $l3 2>/dev/null; do
  now=$(($(date +%s) - began))
  if [ "$now" -ge "$next" ] && [ "$now" -le "$duration" ]; then
    r=$(rss) f=$(fds)
    echo "$now $r $f" >>"$samples"
    echo "soak: t=${now} s RSS ${r} KiB, ${f} descriptors"
    next=$((next + interval))
  fi
  sleep 1
done
status=0
for l in $l1 $l2 $l3; do wait "$l" || status=1; done

# Load stopped: descriptors must come back (closing handshakes take at most a few seconds).
for _ in $(seq 20); do
  [ "$(fds)" -le $((fds_base + FD_MARGIN)) ] && break
  sleep 0.5
done
sleep 1
rss_end=$(rss) fds_end=$(fds)
echo "end $rss_end $fds_end" >>"$samples"
for f in churn long idle; do cat "$out/$f.err" >&2; cat "$out/$f.json"; done
field() { grep -o "\"$2\":[^,}]*" "$out/$1.json" | head -1 | cut -d: -f2; }
sessions=$(field churn msgs)
echo "soak: ${sessions} churn sessions ($(field churn msgs_per_s)/s)," \
  "long-lived echoed $(field long rx_mb_per_s) MB/s, idle $(field idle alive)/${idle} alive at the end"
errors=$(( $(field churn errors) + $(field long errors) + $(field idle errors) + $(field long corrupt) ))
# Peak RSS in each half of the run: a leak shows as a second half above the first.
read -r first_half second_half < <(awk -v d="$duration" '
  NR > 1 && $1 != "end" { if ($1 <= d / 2) { if ($2 > a) a = $2 } else { if ($2 > b) b = $2 } }
  END { print a + 0, b + 0 }' "$samples")
echo "soak: RSS baseline ${rss_base} KiB, peak first half ${first_half} KiB, second half" \
  "${second_half} KiB, end ${rss_end} KiB; descriptors baseline ${fds_base}, end ${fds_end}"
fail=0
[ "$status" -eq 0 ] && [ "$errors" -eq 0 ] || { echo "soak: FAILED: load errors ($errors)" >&2; fail=1; }
[ "$(field idle alive)" = "$idle" ] || { echo "soak: FAILED: idle connections lost" >&2; fail=1; }
[ "$fds_end" -le $((fds_base + FD_MARGIN)) ] || { echo "soak: FAILED: descriptors leaked" >&2; fail=1; }
[ "$rss_end" -le $((rss_base + RSS_MARGIN_KIB)) ] || { echo "soak: FAILED: RSS did not return" >&2; fail=1; }
[ "$second_half" -le $((first_half + GROWTH_KIB)) ] || { echo "soak: FAILED: RSS keeps growing" >&2; fail=1; }
kill -0 "$proxy" 2>/dev/null || { echo "soak: FAILED: the proxy died" >&2; fail=1; }
[ "$fail" -eq 0 ] || exit 1
echo "soak: ok"
