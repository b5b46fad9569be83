#!/usr/bin/env bash
# The proxy's own CPU time per WebSocket session (connect, upgrade, one 64 B echo, close), read
# from /proc/PID/stat around N sessions, for ours, the plain TCP relay and websocat, interleaved.
# The timed churn row of scripts/bench.sh measures the whole machine (load generator, echo
# target and proxy share two cores); this one isolates what the proxy spends.
#
#   scripts/churn-cpu.sh [--rounds R] [--sessions N] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 sessions=20000 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --sessions) sessions=$2; shift ;;
    --no-build) build= ;;
    *) echo "usage: scripts/churn-cpu.sh [--rounds R] [--sessions N] [--no-build]" >&2; exit 1 ;;
  esac
  shift
done
if [ -n "$build" ]; then
  cargo build --release -q -p websockify -p wsbench
fi
ours=target/release/websockify wsbench=target/release/wsbench
have_websocat=$(command -v websocat || true)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo_port=$(free_port)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
"$wsbench" echo-server --listen "127.0.0.1:$echo_port" >/dev/null 2>&1 &
pids+=($!)

ticks_per_s=$(getconf CLK_TCK)
# measure NAME URL_OR_TCP CMD...: the proxy's utime + stime over $sessions sessions.
measure() {
  local name=$1 where=$2 port=$3
  shift 3
  "$@" >/dev/null 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 0.1
  done
  local t0 t1 out
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$("$wsbench" load $where --mode handshake --conns 16 --size 64 --sessions "$sessions" \
    --duration 300 --timeout 30 2>/dev/null | tail -1)
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local done_sessions
  done_sessions=$(grep -o '"connected":[0-9]*' <<<"$out" | cut -d: -f2)
  [ "${done_sessions:-0}" -gt 0 ] || { echo "$name: no sessions: $out" >&2; exit 1; }
  awk -v n="$name" -v t=$((t1 - t0)) -v hz="$ticks_per_s" -v s="$done_sessions" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%-10s %6.1f µs CPU per session (%d sessions, load %s)\n", n, t / hz * 1e6 / s, s, l }'
}

for r in $(seq "$rounds"); do
  echo "round $r"
  p=$(free_port)
  measure plain "--tcp 127.0.0.1:$p" "$p" "$wsbench" tcp-relay --listen "127.0.0.1:$p" --target "127.0.0.1:$echo_port"
  p=$(free_port)
  measure ours "--url ws://127.0.0.1:$p/" "$p" "$ours" "127.0.0.1:$p" "127.0.0.1:$echo_port"
  if [ -n "$have_websocat" ]; then
    p=$(free_port)
    measure websocat "--url ws://127.0.0.1:$p/" "$p" websocat -b -E "ws-l:127.0.0.1:$p" "tcp:127.0.0.1:$echo_port"
  fi
done
