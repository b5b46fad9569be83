#!/usr/bin/env bash
# Single-connection throughput of our websockify against a plain tokio TCP relay (the
# yardstick), measured in the same run on the same machine, written to BENCHMARKS.md.
#
# Usage (from the repo root): scripts/bench.sh [options]
#   --runs N            runs per measurement, the median is reported (default 3)
#   --duration S        measured seconds per run (default 3; plus --warmup)
#   --warmup S          unmeasured seconds per run (default 1)
#   --size BYTES        message size for echo and upload (default 65536)
#   --pipeline K        messages in flight in the echo test (default 4)
#   --with-reference    also measure the Python reference (/tmp/ref/bin/websockify or $WEBSOCKIFY_REF)
#   --with-websocat     also measure websocat, if it is on PATH
#   --no-build          use the binaries already built
#   env WEBSOCKIFY_OURS=PATH measures that binary as "ours" instead of the one built here
#   --out FILE          markdown file to update (default BENCHMARKS.md; "-" = don't write)
#
# Every server and proxy runs on 127.0.0.1 on a free port and is killed on exit.
# Raw JSON lines and logs are kept in reports/bench-<timestamp>/.
set -euo pipefail

RUNS=3 DURATION=3 WARMUP=1 SIZE=65536 PIPELINE=4 BUILD=1 OUT=BENCHMARKS.md
EXTRA_KINDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --with-reference) EXTRA_KINDS+=(reference); shift ;;
    --with-websocat) EXTRA_KINDS+=(websocat); shift ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
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

if [ "$BUILD" = 1 ]; then
  echo "== building release binaries" >&2
  if ! cargo build --release -p websockify -p wsbench >&2; then
    echo "bench.sh: building websockify failed; measuring the yardsticks only" >&2
    cargo build --release -p wsbench >&2
  fi
fi
[ -x "$WSBENCH" ] || { echo "bench.sh: $WSBENCH missing" >&2; exit 1; }

# ---- process bookkeeping: everything started here is killed on exit ----
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    pkill -TERM -P "$pid" 2>/dev/null || true   # the reference forks a child per connection
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD... : runs CMD in the background, logging to the report dir.
start() {
  local name=$1; shift
  "$@" > "$REPORT_DIR/$name.log" 2>&1 &
  PIDS+=($!)
}

free_port() { "$WSBENCH" free-port; }

# ---- targets ----
declare -A TARGET_PORT
for t in echo sink source; do
  TARGET_PORT[$t]=$(free_port)
  start "$t-server" "$WSBENCH" "$t-server" --listen "127.0.0.1:${TARGET_PORT[$t]}"
done
for t in echo sink source; do "$WSBENCH" wait-port "127.0.0.1:${TARGET_PORT[$t]}" --timeout 10; done

# ---- proxies: the yardstick list. To add one, add a case to proxy_cmd / proxy_scheme
# / proxy_available / proxy_title. ----
proxy_cmd() { # KIND LISTEN_PORT TARGET_PORT
  case "$1" in
    plain) echo "$WSBENCH tcp-relay --listen 127.0.0.1:$2 --target 127.0.0.1:$3" ;;
    ours) echo "$OURS 127.0.0.1:$2 127.0.0.1:$3" ;;
    reference) echo "$REF 127.0.0.1:$2 127.0.0.1:$3" ;;
    websocat) echo "websocat --binary ws-l:127.0.0.1:$2 tcp:127.0.0.1:$3" ;;
  esac
}
proxy_scheme() { case "$1" in plain) echo tcp ;; *) echo ws ;; esac; }
proxy_available() {
  case "$1" in
    plain) [ -x "$WSBENCH" ] ;;
    ours) [ -x "$OURS" ] ;;
    reference) [ -x "$REF" ] ;;
    websocat) command -v websocat >/dev/null ;;
  esac
}
proxy_title() {
  case "$1" in
    plain) echo "plain tokio relay" ;;
    ours) echo "ours" ;;
    reference) echo "Python reference" ;;
    websocat) echo "websocat" ;;
  esac
}

KINDS=()
declare -A PROXY_PORT PROXY_PID
# wait_listening PID PORT: up to 15 s, giving up at once if the process has exited.
wait_listening() {
  local i
  for i in $(seq 1 30); do
    "$WSBENCH" wait-port "127.0.0.1:$2" --timeout 0.5 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
  done
  return 1
}
for kind in plain ours "${EXTRA_KINDS[@]}"; do
  if ! proxy_available "$kind"; then
    echo "bench.sh: $(proxy_title "$kind") not available, skipped" >&2
    continue
  fi
  ok=1
  for t in echo sink source; do
    p=$(free_port)
    PROXY_PORT[$kind,$t]=$p
    # shellcheck disable=SC2046
    start "$kind-$t" $(proxy_cmd "$kind" "$p" "${TARGET_PORT[$t]}")
    PROXY_PID[$kind,$t]=$!
  done
  for t in echo sink source; do
    if ! wait_listening "${PROXY_PID[$kind,$t]}" "${PROXY_PORT[$kind,$t]}"; then
      echo "bench.sh: $(proxy_title "$kind") did not start listening (see $REPORT_DIR/$kind-$t.log), skipped" >&2
      ok=0
      break
    fi
  done
  [ "$ok" = 1 ] && KINDS+=("$kind")
done
[ "${#KINDS[@]}" -gt 0 ] || { echo "bench.sh: nothing to measure" >&2; exit 1; }

# ---- the tests: ID|TARGET|wsbench load arguments|title ----
TESTS=(
  "echo|echo|--mode echo --size $SIZE --pipeline $PIPELINE|echo, $((SIZE / 1024)) KiB messages, $PIPELINE in flight (MB/s echoed)"
  "upload|sink|--mode upload --size $SIZE|upload, client → target, $((SIZE / 1024)) KiB messages (MB/s)"
  "download|source|--mode download|download, target → client (MB/s)"
  "pingpong|echo|--mode echo --size 64 --pipeline 1|ping-pong, 64 B messages, 1 in flight"
)

load_args() { # KIND TARGET
  local p=${PROXY_PORT[$1,$2]}
  if [ "$(proxy_scheme "$1")" = tcp ]; then echo "--tcp 127.0.0.1:$p"; else echo "--url ws://127.0.0.1:$p/"; fi
}

field() { # JSON FIELD -> number, or empty
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"
}

median() { # numbers on stdin -> median, or "n/a"
  sort -g | awk '{v[NR]=$1} END {
    if (NR == 0) { print "n/a"; exit }
    if (NR % 2) printf "%.1f\n", v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2] + v[NR/2+1]) / 2 }'
}

declare -A VALUES   # "kind,test,metric" -> space-separated values of the runs
# Other work on the machine skews everything: note the load, warn when it is high.
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench.sh: warning: load average is $LOAD_BEFORE before the run; numbers will be noisy" >&2
fi
total=$(( RUNS * ${#TESTS[@]} * ${#KINDS[@]} ))
n=0
echo "== $total runs of ${WARMUP}+${DURATION} s" >&2
for run in $(seq 1 "$RUNS"); do
  for test in "${TESTS[@]}"; do
    IFS='|' read -r id target args _title <<<"$test"
    # Kinds interleaved within a run, so slow drift of the machine hits all alike.
    for kind in "${KINDS[@]}"; do
      n=$((n + 1))
      # shellcheck disable=SC2086
      line=$("$WSBENCH" load $(load_args "$kind" "$target") $args \
        --duration "$DURATION" --warmup "$WARMUP" --label "$kind" 2>>"$REPORT_DIR/load.log") || true
      echo "$line" >> "$RAW"
      errors=$(field "$line" errors)
      if [ -z "$line" ] || [ "${errors:-1}" != 0 ]; then
        echo "  [$n/$total] $kind $id: FAILED ($(sed -n 's/.*"first_error":\(.*\)}$/\1/p' <<<"$line"))" >&2
        continue
      fi
      for m in mb_per_s msgs_per_s rtt_p50_us rtt_p99_us; do
        VALUES[$kind,$id,$m]+="$(field "$line" "$m") "
      done
      echo "  [$n/$total] $kind $id: $(field "$line" mb_per_s) MB/s, p50 $(field "$line" rtt_p50_us) µs" >&2
    done
  done
done

med() { tr ' ' '\n' <<<"${VALUES[$1,$2,$3]:-}" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

# ---- the markdown section ----
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
SECTION="$REPORT_DIR/section.md"
{
  echo "## Single-connection throughput"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($CPU), $(uname -sr), $(rustc -V 2>/dev/null || echo rustc ?); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1 /proc/loadavg)."
  echo "wsbench from commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)'). Median of $RUNS runs of ${DURATION} s after ${WARMUP} s warmup; MB = 10^6 bytes."
  if [[ " ${KINDS[*]} " == *" ours "* ]]; then
    src=$(git -C "$(dirname "$OURS")" rev-parse --short HEAD 2>/dev/null || echo "unknown commit")
    echo "Ours: \`$OURS\` (built from $src). The plain relay uses 64 KiB buffers per direction and tokio's default worker threads."
  fi
  echo "Client, targets and proxy share the machine's cores; read ratios, not absolutes."
  echo
  header="| test | $(proxy_title plain) |"
  rule="| --- | ---: |"
  for kind in "${KINDS[@]}"; do
    [ "$kind" = plain ] && continue
    header+=" $(proxy_title "$kind") | $(proxy_title "$kind") / plain |"
    rule+=" ---: | ---: |"
  done
  echo "$header"; echo "$rule"
  for test in "${TESTS[@]}"; do
    IFS='|' read -r id _target _args title <<<"$test"
    [ "$id" = pingpong ] && continue
    base=$(med plain "$id" mb_per_s)
    row="| $title | $base |"
    for kind in "${KINDS[@]}"; do
      [ "$kind" = plain ] && continue
      v=$(med "$kind" "$id" mb_per_s)
      row+=" $v | $(ratio "$v" "$base") |"
    done
    echo "$row"
  done
  echo
  echo "Round trip of one 64 B message (ping-pong, one in flight), p50 / p99 in µs, and messages/s:"
  echo
  header="| proxy | p50 µs | p99 µs | msg/s |"
  echo "$header"; echo "| --- | ---: | ---: | ---: |"
  for kind in "${KINDS[@]}"; do
    echo "| $(proxy_title "$kind") | $(med "$kind" pingpong rtt_p50_us) | $(med "$kind" pingpong rtt_p99_us) | $(med "$kind" pingpong msgs_per_s) |"
  done
  echo
  echo "Commands (ports are picked free at run time; targets: \`wsbench echo-server|sink-server|source-server --listen 127.0.0.1:PORT\`):"
  echo
  echo '```sh'
  echo "scripts/bench.sh --runs $RUNS --duration $DURATION --warmup $WARMUP --size $SIZE --pipeline $PIPELINE$(printf ' --with-%s' "${EXTRA_KINDS[@]}" | sed 's/ --with-$//')"
  for kind in "${KINDS[@]}"; do
    proxy_cmd "$kind" LISTEN TARGET | sed "s#^$BIN/#target/release/#"
  done
  for test in "${TESTS[@]}"; do
    IFS='|' read -r id target args _title <<<"$test"
    echo "wsbench load --url ws://127.0.0.1:LISTEN/ $args --duration $DURATION --warmup $WARMUP   # $target target; --tcp 127.0.0.1:LISTEN for the plain relay"
  done
  echo '```'
} > "$SECTION"

cat "$SECTION"
if [ "$OUT" != - ]; then
  BEGIN='<!-- bench.sh:begin (generated by scripts/bench.sh; edits inside are overwritten) -->'
  END='<!-- bench.sh:end -->'
  if [ ! -f "$OUT" ]; then
    printf '# Benchmarks\n\nRun `scripts/bench.sh` from the repo root to refresh the section below.\n\n' > "$OUT"
  fi
  if grep -qF "$BEGIN" "$OUT"; then
    awk -v b="$BEGIN" -v e="$END" -v f="$SECTION" '
      $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
      $0 == e { skip = 0 }
      !skip { print }' "$OUT" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
  else
    { echo "$BEGIN"; cat "$SECTION"; echo "$END"; } >> "$OUT"
  fi
  echo "== wrote $OUT (raw results: $RAW)" >&2
fi
