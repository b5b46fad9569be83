#!/usr/bin/env bash
# What each token gate costs per session, measured two ways against ours without a gate:
# - churn: 16 clients looping connect, upgrade, one 64 B echo, close (the gate rows of
#   scripts/bench.sh), the proxies interleaved ABBA in every run; the median ratio to ours
#   without a gate is reported, with the load average (the rows are noisy on a shared machine);
# - instructions per session (callgrind, one worker thread, as scripts/perf-guard.sh): the
#   proxy makes 20 and 220 sessions one after another, the difference over 200 — deterministic,
#   but blind to the kernel (a thread wake-up costs far more than its instructions);
# - CPU per session: the proxy's user + system CPU time over --cpu-sessions sessions (16
#   clients), from /proc/PID/stat, the kernel included.
#
# Usage (from the repo root): scripts/gate-bench.sh [--runs N] [--duration S] [--no-callgrind]
#   [--cpu-sessions N] [--only LIST]   (LIST of ours,ours-tokens,ours-jwt; default all three)
#   env WEBSOCKIFY_OURS=PATH measures that binary (default target/release/websockify); wsbench is
#   target/release/wsbench (cargo build --release -p websockify -p wsbench).
# The token file has 10,000 lines (`desk-N: 127.0.0.1:ECHO`), the token asked is desk-5000; the
# JWT is RS256 signed by openssl with tests/fixtures/jwt/rsa.pem (a 2048-bit key). Everything
# runs on 127.0.0.1 and is killed on exit; every wait is bounded. Results: one line per
# measurement on stdout and the summary on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=5 DURATION=3 WARMUP=1 CALLGRIND=1 CPU_SESSIONS=20000 ONLY=ours,ours-tokens,ours-jwt
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-callgrind) CALLGRIND=0; shift ;;
    --cpu-sessions) CPU_SESSIONS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gate-bench: unknown option $1" >&2; exit 2 ;;
  esac
done
BIN="${CARGO_TARGET_DIR:-target}/release"
WSBENCH="$BIN/wsbench"
OURS="${WEBSOCKIFY_OURS:-$BIN/websockify}"
[ -x "$OURS" ] && [ -x "$WSBENCH" ] || { echo "gate-bench: build $OURS and $WSBENCH first" >&2; exit 1; }
IFS=, read -r -a KINDS <<<"$ONLY"

WORK=$(mktemp -d /tmp/gate-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; done
  for pid in "${PIDS[@]:-}"; do if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
load1() { cut -d' ' -f1 /proc/loadavg; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

ECHO_PORT=$("$WSBENCH" free-port)
"$WSBENCH" echo-server --listen "127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
"$WSBENCH" wait-port "127.0.0.1:$ECHO_PORT" --timeout 10 >/dev/null
for i in $(seq 1 10000); do echo "desk-$i: 127.0.0.1:$ECHO_PORT"; done >"$WORK/tokens"
JWT_KEY=tests/fixtures/jwt/rsa.pem
jwt_input="$(printf '{"alg":"RS256"}' | b64url).$(printf '{"host":"127.0.0.1","port":%s}' "$ECHO_PORT" | b64url)"
JWT_TOKEN="$jwt_input.$(printf %s "$jwt_input" | openssl dgst -sha256 -sign "$JWT_KEY" -binary | b64url)"
# The token file must be older than the TokenFile's racy window (2 s), or it is read again at
# each lookup until it is: measure the steady state.
touch -d '-1 minute' "$WORK/tokens"

args() { # KIND LISTEN_PORT: the proxy's arguments
  case "$1" in
    ours) echo "127.0.0.1:$2 127.0.0.1:$ECHO_PORT" ;;
    ours-tokens) echo "--token-plugin TokenFile --token-source $WORK/tokens 127.0.0.1:$2" ;;
    ours-jwt) echo "--token-plugin JWTTokenApi --token-source $JWT_KEY 127.0.0.1:$2" ;;
  esac
}
url() { # KIND PORT
  case "$1" in
    ours) echo "ws://127.0.0.1:$2/" ;;
    ours-tokens) echo "ws://127.0.0.1:$2/websockify?token=desk-5000" ;;
    ours-jwt) echo "ws://127.0.0.1:$2/websockify?token=$JWT_TOKEN" ;;
  esac
}
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- churn, interleaved ----
declare -A PORT PID
for kind in "${KINDS[@]}"; do
  PORT[$kind]=$("$WSBENCH" free-port)
  # shellcheck disable=SC2046
  RUST_LOG=warn "$OURS" $(args "$kind" "${PORT[$kind]}") >"$WORK/$kind.log" 2>&1 &
  PID[$kind]=$!
  PIDS+=($!)
  "$WSBENCH" wait-port "127.0.0.1:${PORT[$kind]}" --timeout 15 >/dev/null
done
LOAD_BEFORE=$(load1)
for run in $(seq 1 "$RUNS"); do
  order=("${KINDS[@]}")
  if [ $((run % 2)) = 0 ]; then
    order=()
    for ((i = ${#KINDS[@]} - 1; i >= 0; i--)); do order+=("${KINDS[$i]}"); done
  fi
  for kind in "${order[@]}"; do
    l=$(load1)
    rate=$("$WSBENCH" load --url "$(url "$kind" "${PORT[$kind]}")" --mode handshake --conns 16 \
      --size 64 --duration "$DURATION" --warmup "$WARMUP" 2>>"$WORK/load.log" | field msgs_per_s)
    echo "churn run=$run kind=$kind sessions_per_s=${rate:-0} load1=$l"
    echo "${rate:-0}" >>"$WORK/churn-$kind"
  done
done
# ---- CPU per session (the kernel included), the proxies still running ----
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for kind in "${KINDS[@]}"; do
  before=$(ticks "${PID[$kind]}")
  "$WSBENCH" load --url "$(url "$kind" "${PORT[$kind]}")" --mode handshake --conns 16 --size 64 \
    --sessions "$CPU_SESSIONS" --duration 300 --timeout 30 >/dev/null 2>>"$WORK/load.log"
  after=$(ticks "${PID[$kind]}")
  cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$CPU_SESSIONS" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  echo "cpu kind=$kind us_per_session=$cpu"
  echo "$cpu" >"$WORK/cpu-$kind"
done
for kind in "${KINDS[@]}"; do kill "${PID[$kind]}" 2>/dev/null || true; wait "${PID[$kind]}" 2>/dev/null || true; done

# ---- instructions per session (callgrind) ----
handshake_ir() { # KIND SESSIONS
  local port proxy
  port=$("$WSBENCH" free-port)
  # shellcheck disable=SC2046
  RUST_LOG=warn TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind \
    --callgrind-out-file="$WORK/cg-$1-$2.out" "$OURS" $(args "$1" "$port") >"$WORK/cg-$1-$2.log" 2>&1 &
  proxy=$!
  PIDS+=("$proxy")
  "$WSBENCH" wait-port "127.0.0.1:$port" --timeout 60 >/dev/null
  "$WSBENCH" load --url "$(url "$1" "$port")" --mode handshake --conns 1 --size 64 \
    --sessions "$2" --duration 300 --timeout 30 >/dev/null 2>>"$WORK/load.log"
  kill -TERM "$proxy"
  wait "$proxy" || { echo "gate-bench: $1 under callgrind exited badly" >&2; cat "$WORK/cg-$1-$2.log" >&2; return 1; }
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$WORK/cg-$1-$2.out" | head -1
}
if [ "$CALLGRIND" = 1 ]; then
  for kind in "${KINDS[@]}"; do
    few=$(handshake_ir "$kind" 20)
    many=$(handshake_ir "$kind" 220)
    ir=$(awk -v a="$few" -v b="$many" 'BEGIN { printf "%.0f", (b - a) / 200 }')
    echo "callgrind kind=$kind instructions_per_session=$ir"
    echo "$ir" >"$WORK/ir-$kind"
  done
fi

{
  echo "== $RUNS interleaved runs of ${WARMUP}+${DURATION} s; load average before $LOAD_BEFORE, after $(load1)"
  base=$(median <"$WORK/churn-ours" 2>/dev/null || echo 0)
  for kind in "${KINDS[@]}"; do
    med=$(median <"$WORK/churn-$kind")
    ratios=""
    if [ -f "$WORK/churn-ours" ]; then
      # Per run: this kind's rate over ours' in the same run; the median of those.
      ratios=$(paste "$WORK/churn-$kind" "$WORK/churn-ours" | awk '$2 > 0 { printf "%.3f\n", $1 / $2 }' | median)
    fi
    printf '%-12s churn median %8.0f sessions/s (%s); median per-run ratio %s; cpu %s us/session; %s instructions/session\n' \
      "$kind" "$med" "$(tr '\n' ' ' <"$WORK/churn-$kind" | sed 's/ $//')" "${ratios:-?}" \
      "$(cat "$WORK/cpu-$kind" 2>/dev/null || echo ?)" "$(cat "$WORK/ir-$kind" 2>/dev/null || echo ?)"
  done
  echo "(ours without a gate: median $base sessions/s)"
} >&2
