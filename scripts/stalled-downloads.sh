#!/usr/bin/env bash
# Memory held per stalled `--web` download: the proxy serves a 64 MiB file from a tmpfs; N
# clients send a GET and never read. Reports the proxy's RSS and Pss before and while the N
# downloads are stalled, and the difference per download.
# Usage: scripts/stalled-downloads.sh [N] [PROXY_BINARY]   (default 200, target/release/websockify)
# MALLOC_ARENA_MAX=1 in the environment (passed to the proxy) leaves out glibc's per-thread
# arenas, as tests/web.rs does.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
ours=${2:-target/release/websockify}
ulimit -n 20000
dir=$(mktemp -d /dev/shm/stalled-downloads.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
head -c $((64 * 1024 * 1024)) /dev/urandom >"$dir/big.bin"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The target is never used: only web requests are made.
RUST_LOG=warn "$ours" --web "$dir" "127.0.0.1:$port" 127.0.0.1:9 >/dev/null 2>&1 &
proxy=$!
pids+=($proxy)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$proxy/status"; }
pss() { awk '/^Pss:/ {print $2}' "/proc/$proxy/smaps_rollup"; }
# Warm up: a few whole downloads at once, so the runtime's threads and pools exist before the
# baseline.
warm=()
for _ in 1 2 3 4; do curl -s -o /dev/null "http://127.0.0.1:$port/big.bin" & warm+=($!); done
wait "${warm[@]}" || true
sleep 1
rss_before=$(rss)
pss_before=$(pss)
# The stalled clients: a small receive buffer (so the kernel holds little for them), one GET
# each, then nothing read until told to stop (stdin closes).
python3 - "$port" "$n" <<'EOF' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
    time.sleep(0.005)  # one at a time: no burst of blocking-pool threads in the measurement
print(f"{n} downloads requested", flush=True)
time.sleep(3600)
EOF
client=$!
pids+=($client)
# Stalled once the proxy's memory stops moving (sampled every 0.5 s), at most 20 s.
sleep 2
last=$(rss)
for _ in $(seq 40); do
  sleep 0.5
  now=$(rss)
  [ "$now" = "$last" ] && break
  last=$now
done
rss_during=$(rss)
pss_during=$(pss)
conns=$(ls -l "/proc/$proxy/fd" | grep -c socket || true)
kill "$client"
echo "stalled downloads: $n  proxy sockets open: $conns"
echo "RSS before: ${rss_before} KiB  stalled: ${rss_during} KiB"
echo "Pss before: ${pss_before} KiB  stalled: ${pss_during} KiB"
awk -v b="$rss_before" -v d="$rss_during" -v n="$n" 'BEGIN { printf "RSS per stalled download: %.1f KiB\n", (d - b) / n }'
awk -v b="$pss_before" -v d="$pss_during" -v n="$n" 'BEGIN { printf "Pss per stalled download: %.1f KiB\n", (d - b) / n }'
