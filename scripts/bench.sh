#!/usr/bin/env bash
# The benchmark matrix of the performance issues: our websockify against its yardsticks — a
# plain tokio TCP relay (the ceiling for any userspace relay), websocat 1.14 and the Python
# reference 0.13.0 (with numpy), plus socat for the CPU-per-GB row; over wss:// ours with
# --cert against websocat's TLS listener, HAProxy terminating TLS in front of our ws:// and
# the reference with --cert; and the cost of our gates (a 10,000-line token file, Redis, JWT
# RS256, --metrics-listen scraped every second) on session churn. All measured in the same
# run on the same machine. Writes BENCHMARKS.md (tables, targets, exact commands) and the plot.
#
# Usage (from the repo root): scripts/bench.sh [options]
#   --quick             1 run of 1 s per test, 2,000 idle connections, 250 MB for CPU/GB
#   --runs N            runs per measurement, the median is reported (default 3)
#   --duration S        measured seconds per throughput run (default 3; plus --warmup)
#   --warmup S          unmeasured seconds per run (default 1)
#   --idle N            idle connections for the memory test (default 8000; the reference
#                       forks a process per connection: it gets N/16)
#   --cpu-bytes N       bytes uploaded per proxy for CPU seconds per GB (default 1e9)
#   --only LIST         comma-separated proxies: plain,ours,websocat,reference,socat (ws://)
#                       and ours-tls,websocat-tls,haproxy-tls,reference-tls (wss://); default all
#   --no-gates          skip the gate rows (ours with tokens, Redis, JWT, metrics; they run
#                       only when ours is selected)
#   --install           install missing yardsticks (websocat via cargo, the reference in a
#                       venv at /tmp/ref, socat, haproxy, redis-server via apt-get)
#   --no-build          use the binaries already built
#   --no-wait           don't wait for the machine to be quiet (load average < 1.0) first
#   --out FILE          markdown file to update (default BENCHMARKS.md; "-" = don't write)
#   --plot FILE         PNG to write (default docs/bench.png; "-" = none)
#   env WEBSOCKIFY_OURS=PATH measures that binary as "ours"; WEBSOCKIFY_REF=PATH the reference
#
# Everything runs on 127.0.0.1 on free ports and is killed on exit; every wait is bounded.
# Raw results (one JSON line per measurement, with the load average), logs, the generated
# certificate, token file and HAProxy configuration are kept in reports/bench-<timestamp>/.
set -euo pipefail

RUNS=3 DURATION=3 WARMUP=1 IDLE=8000 CPU_BYTES=1000000000 BUILD=1 WAIT=1 INSTALL=0
OUT=BENCHMARKS.md PLOT=docs/bench.png GATES=1
ONLY=plain,ours,websocat,reference,socat,ours-tls,websocat-tls,haproxy-tls,reference-tls
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) RUNS=1 DURATION=1 WARMUP=0.5 IDLE=2000 CPU_BYTES=250000000; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --cpu-bytes) CPU_BYTES=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --no-gates) GATES=0; shift ;;
    --install) INSTALL=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-wait) WAIT=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --plot) PLOT=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$0"/..)"
BIN="${CARGO_TARGET_DIR:-target}/release"
WSBENCH="$BIN/wsbench"
OURS="${WEBSOCKIFY_OURS:-$BIN/websockify}"
REF="${WEBSOCKIFY_REF:-/tmp/ref/bin/websockify}"
REPORT_DIR="reports/bench-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$REPORT_DIR"
RAW="$REPORT_DIR/raw.jsonl"
: > "$RAW"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$INSTALL" = 1 ]; then
  command -v websocat >/dev/null || cargo install websocat --version 1.14.0 >&2
  missing=""
  for p in socat haproxy redis-server openssl curl; do command -v "$p" >/dev/null || missing="$missing $p"; done
  missing=${missing/redis-server/redis-server redis-tools}
  # shellcheck disable=SC2086
  [ -z "$missing" ] || { apt-get update -qq && apt-get install -y -qq $missing; } >&2
  if [ ! -x "$REF" ]; then
    python3 -m venv /tmp/ref >&2 && /tmp/ref/bin/pip install -q websockify==0.13.0 numpy >&2
  fi
fi
if [ "$BUILD" = 1 ]; then
  echo "== building release binaries" >&2
  # One build for both, as in every script (scripts/conformance.sh says why).
  cargo build --release -p websockify -p wsbench >&2
fi
[ -x "$WSBENCH" ] || { echo "bench.sh: $WSBENCH missing" >&2; exit 1; }

# ---- process bookkeeping: everything started here is killed on exit ----
PIDS=()
declare -A COMPANION # proxy PID -> the PID of the process behind it (HAProxy's ours)
kill_tree() { # PID: the process and its descendants (the reference and socat fork)
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -TERM "$1" 2>/dev/null || true
}
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill_tree "$pid"; done
  for pid in "${PIDS[@]:-}"; do if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # NAME CMD...: in the background, logging to the report dir; sets LAST_PID
  local name=$1; shift
  "$@" > "$REPORT_DIR/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
stop() { # PID: it, its descendants and its companion (start_proxy)
  local c=${COMPANION[$1]:-}
  kill_tree "$1"
  wait "$1" 2>/dev/null || true
  if [ -n "$c" ]; then kill_tree "$c"; wait "$c" 2>/dev/null || true; fi
}
free_port() { "$WSBENCH" free-port; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# ---- wait for a quiet machine (others share it): load average < 1.0, at most 10 min ----
if [ "$WAIT" = 1 ]; then
  for _ in $(seq 20); do
    awk -v l="$(load1)" 'BEGIN { exit !(l < 1.0) }' && break
    echo "bench.sh: load average $(load1), waiting for < 1.0 (30 s)" >&2
    sleep 30
  done
fi
LOAD_BEFORE=$(load1)

# ---- what the wss:// and gate rows need, made fresh in the report dir ----
# A self-signed P-256 certificate for 127.0.0.1 (PEM for ours and the reference, PEM with the
# key for HAProxy, PKCS#12 for websocat: unencrypted, since websocat reads the archive on every
# connection, and the key derivation of an encrypted one halved its churn).
CERT="$REPORT_DIR/cert.pem" KEY="$REPORT_DIR/key.pem" CERT_KEY="$REPORT_DIR/cert+key.pem" P12="$REPORT_DIR/cert.p12"
HAVE_CERT=0
if command -v openssl >/dev/null &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$KEY" -out "$CERT" -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$REPORT_DIR/openssl.log" 2>&1 &&
  openssl pkcs12 -export -in "$CERT" -inkey "$KEY" -out "$P12" -passout pass: \
    -keypbe NONE -certpbe NONE -nomaciter >>"$REPORT_DIR/openssl.log" 2>&1; then
  cat "$CERT" "$KEY" > "$CERT_KEY"
  HAVE_CERT=1
else
  echo "bench.sh: no certificate (openssl missing or failed, see $REPORT_DIR/openssl.log): no wss:// rows" >&2
fi
TOKENS="$REPORT_DIR/tokens" JWT_KEY=tests/fixtures/jwt/rsa.pem
TOKEN_QUERY="?token=desk-5000" JWT_TOKEN="" REDIS_PORT="" METRICS_PORT=""

# ---- the proxies. To add one: proxy_cmd, proxy_scheme, proxy_available; titles in bench_report.py ----
# proxy_cmd KIND LISTEN_PORT TARGET_PORT: a shell command line (run as `bash -c "exec LINE"`).
# HAProxy terminates TLS in front of our ws:// (inner_cmd, on a port of its own): its CPU and
# memory figures count both processes.
proxy_cmd() {
  case "$1" in
    plain) echo "$WSBENCH tcp-relay --listen 127.0.0.1:$2 --target 127.0.0.1:$3" ;;
    ours) echo "$OURS 127.0.0.1:$2 127.0.0.1:$3" ;;
    websocat) echo "websocat -b -E ws-l:127.0.0.1:$2 tcp:127.0.0.1:$3" ;;
    reference) echo "$REF 127.0.0.1:$2 127.0.0.1:$3" ;;
    socat) echo "socat TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$3" ;;
    ours-tls) echo "$OURS --cert $CERT --key $KEY 127.0.0.1:$2 127.0.0.1:$3" ;;
    websocat-tls) echo "websocat --pkcs12-der $P12 -b -E wss-l:127.0.0.1:$2 tcp:127.0.0.1:$3" ;;
    haproxy-tls) echo "haproxy -db -f $REPORT_DIR/haproxy-$2.cfg" ;;
    reference-tls) echo "$REF --cert $CERT --key $KEY 127.0.0.1:$2 127.0.0.1:$3" ;;
    # The gates: the target comes from the token (every token names the echo target).
    ours-tokens) echo "$OURS --token-plugin TokenFile --token-source $TOKENS 127.0.0.1:$2" ;;
    ours-redis) echo "$OURS --token-plugin TokenRedis --token-source 127.0.0.1:$REDIS_PORT 127.0.0.1:$2" ;;
    ours-jwt) echo "$OURS --token-plugin JWTTokenApi --token-source $JWT_KEY 127.0.0.1:$2" ;;
    ours-metrics) echo "$OURS --metrics-listen 127.0.0.1:$METRICS_PORT 127.0.0.1:$2 127.0.0.1:$3" ;;
  esac
}
inner_cmd() { echo "$OURS 127.0.0.1:$1 127.0.0.1:$2"; } # INNER_PORT TARGET_PORT
# HAProxy needs two descriptors per connection and cannot go past our limit.
HAPROXY_MAXCONN=$((($(ulimit -n) - 200) / 2))
haproxy_cfg() { # LISTEN_PORT INNER_PORT: HAProxy in TCP mode, TLS at the front
  cat <<CFG
global
    maxconn $HAPROXY_MAXCONN
defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
frontend wss
    bind 127.0.0.1:$1 ssl crt $CERT_KEY alpn http/1.1
    default_backend ours
backend ours
    server ours 127.0.0.1:$2
CFG
}
proxy_scheme() {
  case "$1" in plain|socat) echo tcp ;; *-tls) echo wss ;; *) echo ws ;; esac
}
proxy_path() { # what the gate rows ask for: a token the gate must look up or verify
  case "$1" in
    ours-tokens|ours-redis) echo "/websockify$TOKEN_QUERY" ;;
    ours-jwt) echo "/websockify?token=$JWT_TOKEN" ;;
    *) echo / ;;
  esac
}
proxy_available() {
  case "$1" in
    plain) [ -x "$WSBENCH" ] ;;
    ours|ours-tokens|ours-metrics) [ -x "$OURS" ] ;;
    ours-redis) [ -x "$OURS" ] && [ -n "$REDIS_PORT" ] ;;
    ours-jwt) [ -x "$OURS" ] && [ -n "$JWT_TOKEN" ] ;;
    ours-tls) [ -x "$OURS" ] && [ "$HAVE_CERT" = 1 ] ;;
    websocat) command -v websocat >/dev/null ;;
    websocat-tls) command -v websocat >/dev/null && [ "$HAVE_CERT" = 1 ] ;;
    haproxy-tls) [ -x "$OURS" ] && command -v haproxy >/dev/null && [ "$HAVE_CERT" = 1 ] ;;
    reference) [ -x "$REF" ] ;;
    reference-tls) [ -x "$REF" ] && [ "$HAVE_CERT" = 1 ] ;;
    socat) command -v socat >/dev/null ;;
    *) return 1 ;;
  esac
}
# wait_listening PID PORT: up to 15 s, giving up at once if the process has exited.
wait_listening() {
  local _i
  for _i in $(seq 1 30); do
    "$WSBENCH" wait-port "127.0.0.1:$2" --timeout 0.5 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
  done
  return 1
}
# start_proxy KIND TARGET_PORT NAME: starts it, sets PROXY_PORT_OUT and PROXY_PID_OUT.
start_proxy() {
  local port inner inner_pid=""
  port=$(free_port)
  if [ "$1" = haproxy-tls ]; then
    inner=$(free_port)
    start "$3-inner" bash -c "exec $(inner_cmd "$inner" "$2")"
    inner_pid=$LAST_PID
    haproxy_cfg "$port" "$inner" > "$REPORT_DIR/haproxy-$port.cfg"
    if ! wait_listening "$inner_pid" "$inner" ||
      ! haproxy -c -q -f "$REPORT_DIR/haproxy-$port.cfg" >> "$REPORT_DIR/$3.log" 2>&1; then
      stop "$inner_pid"
      return 1
    fi
  fi
  start "$3" bash -c "exec $(proxy_cmd "$1" "$port" "$2")"
  PROXY_PID_OUT=$LAST_PID PROXY_PORT_OUT=$port
  [ -z "$inner_pid" ] || COMPANION[$LAST_PID]=$inner_pid
  wait_listening "$PROXY_PID_OUT" "$port" || { stop "$PROXY_PID_OUT"; return 1; }
}
addr_args() { # KIND PORT
  local scheme
  scheme=$(proxy_scheme "$1")
  if [ "$scheme" = tcp ]; then echo "--tcp 127.0.0.1:$2"; else echo "--url $scheme://127.0.0.1:$2$(proxy_path "$1")"; fi
}

# ---- targets ----
ECHO_PORT=$(free_port) SINK_PORT=$(free_port)
start echo-server "$WSBENCH" echo-server --listen "127.0.0.1:$ECHO_PORT"
start sink-server "$WSBENCH" sink-server --listen "127.0.0.1:$SINK_PORT"
"$WSBENCH" wait-port "127.0.0.1:$ECHO_PORT" --timeout 10
"$WSBENCH" wait-port "127.0.0.1:$SINK_PORT" --timeout 10

IFS=, read -r -a WANTED <<<"$ONLY"
# The gate rows come with ours (their baseline is ours' churn in the same run).
if [ "$GATES" = 1 ] && [[ ",$ONLY," == *,ours,* ]]; then
  for i in $(seq 1 10000); do echo "desk-$i: 127.0.0.1:$ECHO_PORT"; done > "$TOKENS"
  # JWT RS256 signed with the fixture key (openssl: RSASSA-PKCS1-v1_5 over SHA-256 is RS256).
  b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
  jwt_input="$(printf '{"alg":"RS256"}' | b64url).$(printf '{"host":"127.0.0.1","port":%s}' "$ECHO_PORT" | b64url)"
  jwt_sig=$(printf %s "$jwt_input" | openssl dgst -sha256 -sign "$JWT_KEY" -binary 2>>"$REPORT_DIR/openssl.log" | b64url) &&
    [ -n "$jwt_sig" ] && JWT_TOKEN="$jwt_input.$jwt_sig"
  # A real Redis holding the same 10,000 tokens.
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    port=$(free_port)
    start redis redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no
    if wait_listening "$LAST_PID" "$port" &&
      for i in $(seq 1 10000); do echo "SET desk-$i 127.0.0.1:$ECHO_PORT"; done |
        timeout 60 redis-cli -p "$port" >/dev/null; then
      REDIS_PORT=$port
    fi
  fi
  METRICS_PORT=$(free_port)
  WANTED+=(ours-tokens ours-redis ours-jwt ours-metrics)
fi
KINDS=() # the relays of the load tests (socat only does the CPU row)
declare -A ECHO_AT
for kind in "${WANTED[@]}"; do
  proxy_available "$kind" || { echo "bench.sh: $kind not available, skipped (try --install)" >&2; continue; }
  [ "$kind" = socat ] && continue
  if start_proxy "$kind" "$ECHO_PORT" "$kind-echo"; then
    ECHO_AT[$kind]=$PROXY_PORT_OUT
    KINDS+=("$kind")
  else
    echo "bench.sh: $kind did not start (see $REPORT_DIR/$kind-echo.log), skipped" >&2
  fi
done
is_gate() { case "$1" in ours-tokens|ours-redis|ours-jwt|ours-metrics) return 0 ;; *) return 1 ;; esac; }
CPU_KINDS=() IDLE_KINDS=() # the relays (not the gate rows: they differ from ours only per session)
for kind in "${KINDS[@]}"; do is_gate "$kind" || { CPU_KINDS+=("$kind"); IDLE_KINDS+=("$kind"); }; done
[[ ",$ONLY," == *,socat,* ]] && proxy_available socat && CPU_KINDS+=(socat)
[ "${#KINDS[@]}" -gt 0 ] || { echo "bench.sh: nothing to measure" >&2; exit 1; }

record() { # JSON object fields (without braces)
  echo "{$1}" >> "$RAW"
}

# ---- throughput / latency / churn: ID|which proxies|wsbench load arguments ----
# Which proxies: ws = plain ours websocat reference; wss = the *-tls ones; gates = ours with a
# gate; loaded = plain ours websocat (latency under load).
TESTS=(
  "echo64k|ws wss|--mode echo --conns 1 --size 65536 --pipeline 4"
  "echo16k|ws wss|--mode echo --conns 64 --size 16384 --pipeline 2"
  "echo8m|ws|--mode echo --conns 1 --size 8388608 --pipeline 2"
  "pingpong|ws|--mode echo --conns 1 --size 64 --pipeline 1"
  "loaded|loaded|--mode echo --conns 64 --size 65536 --pipeline 2 --probe"
  "churn|ws wss gates|--mode handshake --conns 16 --size 64"
  "resume|wss|--mode handshake --conns 16 --size 64 --tls-resume"
)
applies() { # "CLASSES" KIND
  local class
  case "$2" in
    *-tls) class=wss ;;
    ours-tokens|ours-redis|ours-jwt|ours-metrics) class=gates ;;
    *) class=ws ;;
  esac
  [[ " $1 " == *" $class "* ]] && return 0
  [[ " $1 " == *" loaded "* ]] && [[ " plain ours websocat " == *" $2 "* ]]
}
# scrape: what a busy Prometheus does to ours-metrics while it is measured (curl: starting
# Python every second would cost the client side ~5 % of a core, and look like the metrics').
scraper() { while :; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" || true; sleep 1; done; }
total=0
for test in "${TESTS[@]}"; do
  IFS='|' read -r id classes args <<<"$test"
  for kind in "${KINDS[@]}"; do applies "$classes" "$kind" && total=$((total + RUNS)); done
done
n=0
echo "== $total load runs of ${WARMUP}+${DURATION} s (load average $LOAD_BEFORE)" >&2
for run in $(seq 1 "$RUNS"); do
  # Proxies interleaved within a run, so slow drift of the machine hits all alike; the order
  # reverses every other run (ABBA), so no proxy always runs right after another.
  order=("${KINDS[@]}")
  if [ $((run % 2)) = 0 ]; then
    order=()
    for ((i = ${#KINDS[@]} - 1; i >= 0; i--)); do order+=("${KINDS[$i]}"); done
  fi
  for test in "${TESTS[@]}"; do
    IFS='|' read -r id classes args <<<"$test"
    for kind in "${order[@]}"; do
      applies "$classes" "$kind" || continue
      n=$((n + 1))
      l=$(load1)
      scraper_pid=""
      if [ "$kind" = ours-metrics ]; then
        scraper > /dev/null 2>&1 &
        scraper_pid=$!
        PIDS+=("$scraper_pid")
      fi
      # shellcheck disable=SC2046,SC2086
      line=$("$WSBENCH" load $(addr_args "$kind" "${ECHO_AT[$kind]}") $args \
        --duration "$DURATION" --warmup "$WARMUP" --label "$kind" 2>>"$REPORT_DIR/load.log") || true
      [ -z "$scraper_pid" ] || stop "$scraper_pid"
      [ -n "$line" ] || line=null
      record "\"kind\":\"$kind\",\"test\":\"$id\",\"run\":$run,\"load1\":$l,\"result\":$line"
      echo "  [$n/$total] $kind $id: $(grep -o '"\(mb_per_s\|msgs_per_s\|rtt_p50_us\|rtt_p99_us\|errors\)":[^,]*' <<<"$line" | tr '\n' ' ')(load $l)" >&2
    done
  done
done
if [ -n "${ECHO_AT[ours-metrics]:-}" ]; then
  # The counters moved: the metrics were really on.
  counted=$(curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk '/^websockify_sessions_total[{ ]/ { s += $NF } END { printf "%d", s }')
  echo "  ours-metrics counted ${counted:-0} sessions" >&2
  record "\"kind\":\"ours-metrics\",\"test\":\"metrics-counted\",\"run\":1,\"load1\":$(load1),\"sessions\":${counted:-0}"
fi

# ---- CPU seconds per GB relayed client → target (a fixed number of bytes uploaded) ----
# ticks PID: user+system clock ticks of the process and its live descendants, plus those of
# its reaped children (cutime/cstime: socat and the reference fork a child per connection).
ticks() {
  local pid=$1 sum c f
  f=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || { echo 0; return; }
  # after "pid (comm) " comes field 3: utime=14 stime=15 cutime=16 cstime=17 are $12..$15
  sum=$(awk '{ print $12 + $13 + $14 + $15 }' <<<"$f")
  for c in $(pgrep -P "$pid" 2>/dev/null); do sum=$((sum + $(ticks "$c"))); done
  echo "$sum"
}
proxy_ticks() { # PID: ticks, plus its companion's
  local c=${COMPANION[$1]:-} sum
  sum=$(ticks "$1")
  [ -z "$c" ] || sum=$((sum + $(ticks "$c")))
  echo "$sum"
}
HZ=$(getconf CLK_TCK)
echo "== CPU per GB: $CPU_BYTES bytes uploaded through each of ${CPU_KINDS[*]}, $RUNS runs" >&2
declare -A SINK_AT SINK_PID
for kind in "${CPU_KINDS[@]}"; do
  start_proxy "$kind" "$SINK_PORT" "$kind-sink" || { echo "bench.sh: $kind (sink) did not start" >&2; continue; }
  SINK_AT[$kind]=$PROXY_PORT_OUT
  SINK_PID[$kind]=$PROXY_PID_OUT
done
for run in $(seq 1 "$RUNS"); do
  for kind in "${CPU_KINDS[@]}"; do
    [ -n "${SINK_AT[$kind]:-}" ] || continue
    pid=${SINK_PID[$kind]}
    l=$(load1)
    t0=$(proxy_ticks "$pid")
    # shellcheck disable=SC2046
    line=$("$WSBENCH" load $(addr_args "$kind" "${SINK_AT[$kind]}") --mode upload --size 65536 \
      --bytes "$CPU_BYTES" --duration 120 --label "$kind" 2>>"$REPORT_DIR/load.log") || true
    sleep 0.3 # let a forked child exit and be reaped into cutime
    t1=$(proxy_ticks "$pid")
    [ -n "$line" ] || line=null
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')
    record "\"kind\":\"$kind\",\"test\":\"cpu\",\"run\":$run,\"load1\":$l,\"cpu_s\":$cpu,\"bytes\":$CPU_BYTES,\"result\":$line"
    echo "  cpu $kind run $run: $cpu s for $CPU_BYTES bytes (load $l)" >&2
  done
done
for kind in "${CPU_KINDS[@]}"; do [ -n "${SINK_PID[$kind]:-}" ] && stop "${SINK_PID[$kind]}"; done

# ---- resident memory per idle connection: growth of a fresh proxy over N idle ones ----
# Proportional set size (Pss, /proc/PID/smaps_rollup): for one process it is its RSS less a
# share of the libraries; summed over a forking proxy's processes (the reference) it counts
# the pages they share once, where summed RSS would count them once per process.
rss_tree() { # PID -> KiB of it and its descendants
  local pid=$1 sum c
  sum=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
  for c in $(pgrep -P "$pid" 2>/dev/null); do sum=$((sum + $(rss_tree "$c"))); done
  echo "${sum:-0}"
}
proxy_rss() { # PID: KiB, plus its companion's
  local c=${COMPANION[$1]:-} sum
  sum=$(rss_tree "$1")
  [ -z "$c" ] || sum=$((sum + $(rss_tree "$c")))
  echo "$sum"
}
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
for kind in "${IDLE_KINDS[@]}"; do
  count=$IDLE
  case "$kind" in reference|reference-tls) count=$((IDLE / 16)) ;; esac
  start_proxy "$kind" "$ECHO_PORT" "$kind-idle" || continue
  pid=$PROXY_PID_OUT port=$PROXY_PORT_OUT
  # A few sessions first, so threads and pools exist before the baseline.
  # shellcheck disable=SC2046
  "$WSBENCH" load $(addr_args "$kind" "$port") --mode echo --conns 4 --duration 1 --warmup 0 >/dev/null 2>&1 || true
  sleep 1
  l=$(load1)
  before=$(proxy_rss "$pid")
  hold=$((10 + count / 500))
  # shellcheck disable=SC2046
  "$WSBENCH" load $(addr_args "$kind" "$port") --mode idle --conns "$count" --duration "$hold" \
    --warmup 0 --timeout 60 --label "$kind" > "$REPORT_DIR/idle-$kind.json" 2>>"$REPORT_DIR/load.log" &
  loadpid=$!
  PIDS+=("$loadpid")
  for _ in $(seq 600); do # at most 60 s for every connection to be up
    [ "$(established "$port")" -ge "$count" ] && break
    kill -0 "$loadpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 2
  during=$(proxy_rss "$pid")
  up=$(established "$port")
  wait "$loadpid" || true
  line=$(cat "$REPORT_DIR/idle-$kind.json"); [ -n "$line" ] || line=null
  kib=$(awk -v b="$before" -v d="$during" -v n="$count" 'BEGIN { printf "%.2f", (d - b) / n }')
  record "\"kind\":\"$kind\",\"test\":\"idle\",\"run\":1,\"load1\":$l,\"conns\":$count,\"established\":$up,\"rss_before_kib\":$before,\"rss_during_kib\":$during,\"kib_per_conn\":$kib,\"result\":$line"
  echo "  idle $kind: $count connections ($up established), Pss $before → $during KiB: $kib KiB each (load $l)" >&2
  stop "$pid"
done

# ---- the report ----
export BENCH_COMMANDS
BENCH_COMMANDS=$(
  echo "scripts/bench.sh${ARGS:+ $ARGS}"
  REDIS_PORT=REDIS METRICS_PORT=METRICS # (in this subshell only: placeholders for the ports)
  for kind in "${CPU_KINDS[@]}"; do proxy_cmd "$kind" LISTEN TARGET; done
  for kind in "${KINDS[@]}"; do is_gate "$kind" && proxy_cmd "$kind" LISTEN TARGET; done
  for test in "${TESTS[@]}"; do
    IFS='|' read -r id classes args <<<"$test"
    echo "wsbench load --url ws://127.0.0.1:LISTEN/ $args --duration $DURATION --warmup $WARMUP   # $id ($classes), echo target"
  done
  echo "wsbench load --url ws://127.0.0.1:LISTEN/ --mode upload --size 65536 --bytes $CPU_BYTES --duration 120   # cpu, sink target; proxy utime+stime (+ children) from /proc"
  echo "wsbench load --url ws://127.0.0.1:LISTEN/ --mode idle --conns $IDLE --duration HOLD --warmup 0 --timeout 60   # idle, echo target; Pss (smaps_rollup, summed over the process tree) before and while held"
  echo "# the plain relay and socat are loaded with --tcp 127.0.0.1:LISTEN, the *-tls proxies with --url wss://127.0.0.1:LISTEN/"
  echo "# gates: --url ws://127.0.0.1:LISTEN/websockify?token=desk-5000 (TokenFile, TokenRedis: 10,000 tokens each),"
  echo "#   ?token=JWT (RS256 signed with $JWT_KEY: openssl dgst -sha256 -sign); ours-metrics scraped by curl once a second while measured"
  echo "# redis-server --port REDIS --bind 127.0.0.1 --save '' --appendonly no; filled with SET desk-N 127.0.0.1:TARGET"
  echo "# openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout key.pem -out cert.pem -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
  echo "# openssl pkcs12 -export -in cert.pem -inkey key.pem -out cert.p12 -passout pass: -keypbe NONE -certpbe NONE -nomaciter   # websocat's --pkcs12-der"
  echo "# haproxy-tls: $(inner_cmd INNER TARGET), then haproxy with this config (cert+key.pem = cert.pem and key.pem concatenated):"
  haproxy_cfg LISTEN INNER | sed 's/^/#   /'
) 
BENCH_COMMANDS=$(sed -e "s#$BIN/#target/release/#g" -e "s#$REPORT_DIR/##g" <<<"$BENCH_COMMANDS")
export BENCH_MACHINE BENCH_META
BENCH_MACHINE="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(rustc -V 2>/dev/null || echo rustc ?), websocat $(websocat --version 2>/dev/null | awk '{print $2}'), $("$REF" --help >/dev/null 2>&1 && /tmp/ref/bin/pip show websockify 2>/dev/null | awk '/^Version/ {print "reference " $2}'), $(socat -V 2>/dev/null | awk '/socat version/ {print "socat " $3; exit}'), $(haproxy -v 2>/dev/null | awk 'NR == 1 {print "HAProxy " $3}'), $(redis-server --version 2>/dev/null | awk '{print "Redis " $3}' | sed 's/v=//'), $(openssl version 2>/dev/null | awk '{print "OpenSSL " $2}')"
BENCH_META="Measured $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $LOAD_BEFORE, after: $(load1). Commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)'). Median of $RUNS runs of ${DURATION} s after ${WARMUP} s warmup (throughput, latency, churn) and of $RUNS CPU runs; one idle run; MB = 10^6 bytes."
python3 scripts/bench_report.py "$RAW" "$REPORT_DIR" "$OUT" "$PLOT" "$WSBENCH"
echo "== raw results: $RAW" >&2
