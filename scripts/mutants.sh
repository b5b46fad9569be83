#!/usr/bin/env bash
# Mutation testing with cargo-mutants (docs/testing.md): each source file is mutated against
# the narrow test command that guards it (the lib's unit tests, plus the tests/*.rs file of its
# area), so a mutant costs seconds, not a build of the whole suite.
#
#   scripts/mutants.sh FILE...                  every mutant in these files
#   scripts/mutants.sh --in-diff DIFF FILE...   only mutants in lines DIFF touches (CI)
#   scripts/mutants.sh --lib-only FILE...       unit tests only (fast first pass)
#   scripts/mutants.sh FILE... -- ARGS          extra cargo-mutants args (-F REGEX, --iterate, ...)
#   scripts/mutants.sh --summary                per file: caught, missed, timeout, unviable, score
#   MUTANTS_TIMEOUT=S   per-mutant test timeout (default 60 s unit tests, 120 s with an area's
#                       tests): a mutant that makes the decoder loop forever costs this much
#
# Results: $MUTANTS_OUT/<group>/mutants.out/{caught,missed,timeout,unviable}.txt (default
# MUTANTS_OUT=target/mutants; <group> names the test command: lib, lib-web, ...).
# Exit status: 0 nothing missed, 2 a mutant was missed, 3 only timeouts, other: an error.
# Mutates in place (no copy of the tree and its target); the files are restored on any exit,
# even when interrupted. Needs cargo-mutants (cargo install --locked cargo-mutants).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${MUTANTS_OUT:-target/mutants}
# --summary: caught / missed / timeout / unviable per file, from the last runs' results
# (a run with --iterate counts what earlier runs caught as caught). cargo-mutants lists the
# unviable mutants of earlier runs in previously_caught.txt too: unviable-seen.txt (kept
# below, across runs) tells them apart.
if [ "${1:-}" = --summary ]; then
  for o in "$out"/*/mutants.out; do
    seen="$o/../unviable-seen.txt"
    for kind in caught missed timeout unviable; do
      [ -f "$o/$kind.txt" ] && sed "s/:.*//; s/^/$kind /" "$o/$kind.txt"
    done
    if [ -f "$o/previously_caught.txt" ]; then
      if [ -f "$seen" ]; then
        { grep -Fxf "$seen" "$o/previously_caught.txt" || true; } | sed "s/:.*//; s/^/unviable /"
        { grep -vFxf "$seen" "$o/previously_caught.txt" || true; } | sed "s/:.*//; s/^/caught /"
      else
        sed "s/:.*//; s/^/caught /" "$o/previously_caught.txt"
      fi
    fi
  done | sort | uniq -c | awk '{ n[$3, $2] = $1; files[$3] = 1 }
    END {
      printf "%-28s %7s %7s %8s %9s %7s\n", "file", "caught", "missed", "timeout", "unviable", "score"
      for (f in files) {
        c = n[f, "caught"] + 0; m = n[f, "missed"] + 0; t = n[f, "timeout"] + 0
        printf "%-28s %7d %7d %8d %9d %6.1f%%\n", f, c, m, t, n[f, "unviable"] + 0,
          (c + m + t) ? 100 * (c + t) / (c + m + t) : 100
      }
    }'
  exit 0
fi

lib_only=
diff=
files=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --lib-only) lib_only=1 ;;
    --in-diff) diff=$(realpath "$2"); shift ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "mutants.sh: unknown option $1" >&2; exit 1 ;;
    *) files+=("$1") ;;
  esac
  shift
done
[ ${#files[@]} -gt 0 ] || { echo "usage: scripts/mutants.sh [--lib-only] [--in-diff DIFF] FILE... [-- ARGS]" >&2; exit 1; }

# The integration test files that guard a file besides the lib's unit tests ("-": none, "ALL":
# the whole suite).
tests_for() {
  case "$1" in
    # The base64 subprotocol's decoder and encoder over real sessions: split and padded
    # messages, invalid text closing with 1007 (relay.rs), base64 chosen and frames pipelined
    # with the upgrade (handshake.rs).
    src/ws/base64.rs) echo "relay handshake" ;;
    src/ws/* | src/percent.rs) echo - ;;
    # The peer's IP (trusted proxies) and the scheme in the session's log line.
    src/conninfo.rs) echo "proxy_protocol log_format" ;;
    # Socket options of accepted sockets.
    src/net.rs) echo "listen" ;;
    # The Flash policy answer (web.rs) and the replayed first bytes of every plain connection.
    src/sniff.rs) echo "web handshake" ;;
    # Trusted proxies' forwarded clients and the `via` field (log_format.rs), MAX_REQUESTS
    # (logs.rs), `--web` (web.rs).
    src/http/mod.rs) echo "handshake proxy_protocol logs log_format web" ;;
    src/http/upgrade.rs | src/http/forwarded.rs) echo "handshake" ;;
    src/http/web.rs) echo "web" ;;
    src/http/stall.rs) echo "hostile web" ;;
    src/relay/*) echo "relay heartbeat" ;;
    src/gate/token/jwt.rs | src/gate/token/jose/*) echo "token_jwt" ;;
    # The backends' plugins are driven only by token_backends.rs (tests/tokens.rs is the file
    # plugins'); api.rs's json_target also reads JWTTokenApi's claims (token_jwt.rs).
    src/gate/token/redis.rs) echo "token_backends" ;;
    src/gate/token/api.rs) echo "token_backends token_jwt" ;;
    src/gate/token/*) echo "tokens token_backends" ;;
    src/gate/auth/*) echo "auth" ;;
    src/gate/*) echo "tokens auth" ;;
    src/config/*) echo "cli" ;;
    # SIGHUP and the certificate watch (signals.rs); nothing in tls.rs reloads.
    src/tls/reload.rs) echo "signals" ;;
    # target_client and --target-insecure (tls_target.rs).
    src/tls/mod.rs) echo "tls tls_target" ;;
    src/tls/*) echo "tls" ;;
    # The PROXY header sent to targets (proxy_protocol.rs).
    src/target/*) echo "tls_target relay proxy_protocol" ;;
    src/listen/mod.rs) echo "listen wrap" ;;
    src/listen/inetd.rs) echo "listen" ;;
    # --systemd's sockets are passed only by systemd.rs (listen.rs never activates).
    src/listen/systemd.rs) echo "systemd" ;;
    # Trusted balancers' PROXY headers (proxy_protocol.rs).
    src/listen/proxy.rs) echo "proxy_protocol" ;;
    # tcp.rs, unix.rs: addresses, -6, --unix-listen's modes and stale sockets (listen.rs);
    # proxy_protocol.rs only binds TCP like every other file.
    src/listen/*) echo "listen" ;;
    src/proxy_header.rs) echo "proxy_protocol" ;;
    # Each observer against the file that watches its output: the scrape (metrics.rs), the
    # recordings (record.rs), --traffic's stdout and --syslog (log_targets.rs), sd_notify
    # (systemd.rs), redacted and escaped lines (logs.rs, log_format.rs), the JSON lines
    # (log_format.rs), --log-file's reopening (log_targets.rs).
    src/observe/metrics.rs) echo "metrics" ;;
    src/observe/record.rs) echo "record" ;;
    src/observe/writer.rs) echo "record log_targets" ;;
    src/observe/traffic.rs | src/observe/syslog.rs) echo "log_targets" ;;
    src/observe/notify.rs) echo "systemd" ;;
    src/observe/redact.rs) echo "logs log_format" ;;
    src/observe/json.rs) echo "log_format" ;;
    src/observe/log.rs) echo "logs log_format log_targets" ;;
    src/observe/*) echo "logs record log_targets" ;;
    src/server/limits.rs) echo "limits" ;;
    # conn.rs, a connection's phases: the PROXY header, with and without a certificate
    # (proxy_protocol.rs), the TLS handshake and --ssl-only (tls.rs), the refusals and their
    # 503 (limits.rs), the Flash policy answer (web.rs), the session and --run-once (relay.rs).
    # Not the whole suite (`*`): ~40 files per mutant.
    src/server/conn.rs) echo "proxy_protocol tls limits web relay" ;;
    # The drain, the grace and SIGHUP (signals.rs), --idle-timeout and the session count
    # (relay.rs), the listeners it serves (listen.rs).
    src/server/mod.rs) echo "signals relay listen" ;;
    # process/mod.rs: the exit status and stream (process.rs), SIGTERM/SIGINT/SIGHUP
    # (signals.rs), SIGUSR1's log reopening (log_targets.rs).
    src/process/mod.rs) echo "process signals log_targets" ;;
    src/process/daemon.rs) echo "daemon" ;;
    # wrap.rs: the wrapped programs (wrap.rs) and a wrap behind -D (daemon.rs); process.rs
    # never wraps.
    src/process/wrap.rs) echo "wrap daemon" ;;
    src/process/*) echo "process wrap daemon" ;;
    # main: the exit status of a start-up failure and of a served run (process.rs).
    src/main.rs) echo "process" ;;
    *) echo "ALL" ;;
  esac
}

# Restore the mutated files whatever happens (cargo-mutants reverts each mutant itself, but a
# kill mid-build would leave one in the tree).
backup=$(mktemp -d)
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "mutants.sh: no such file: $f" >&2; exit 1; }
  mkdir -p "$backup/$(dirname "$f")"
  cp -p "$f" "$backup/$f"
done
restore() {
  for f in "${files[@]}"; do
    cmp -s "$backup/$f" "$f" || { cp -p "$backup/$f" "$f"; echo "mutants.sh: restored $f" >&2; }
  done
  rm -rf "$backup"
}
trap restore EXIT
trap 'exit 130' INT TERM

# One cargo-mutants run per test command.
declare -A group_files
for f in "${files[@]}"; do
  t=$(tests_for "$f")
  group_files[$t]+=" -f $f"
done

status=0
for t in "${!group_files[@]}"; do
  args=(--in-place --baseline skip --no-shuffle)
  if [ "$t" = ALL ] && [ -z "$lib_only" ]; then
    name=lib-all  # the same directory as --lib-only, for `-- --iterate`
    args+=(--timeout "${MUTANTS_TIMEOUT:-300}")
  else
    # -C goes to both the build (cargo test --no-run) and the test run: only these targets.
    # --lib-only writes to the same directory, so a later full run can take `-- --iterate`
    # and test only what the unit tests missed.
    # A file with no area of its own ("ALL") is guarded by the whole suite, except with
    # --lib-only, where it gets the unit tests like any other.
    name=lib
    [ "$t" = - ] || name=lib-${t// /-}
    [ "$t" = ALL ] && name=lib-all
    if [ "$t" = - ] || [ -n "$lib_only" ]; then
      args+=(-C --lib --timeout "${MUTANTS_TIMEOUT:-60}")
    else
      args+=(-C --lib --timeout "${MUTANTS_TIMEOUT:-120}")
      for test in $t; do args+=(-C --test -C "$test"); done
    fi
  fi
  [ -n "$diff" ] && args+=(--in-diff "$diff")
  # shellcheck disable=SC2206 # the -f FILE pairs, split on purpose
  args+=(${group_files[$t]})
  mkdir -p "$out/$name"
  echo "== cargo mutants ($name):${group_files[$t]}"
  rc=0
  cargo mutants "${args[@]}" -o "$out/$name" "${extra[@]}" || rc=$?
  # The unviable mutants of every run so far, for --summary (an --iterate run does not list
  # them again).
  unviable="$out/$name/mutants.out/unviable.txt" seen="$out/$name/unviable-seen.txt"
  if [ -f "$unviable" ]; then
    touch "$seen"
    sort -u -o "$seen" "$seen" "$unviable"
  fi
  # cargo-mutants exits 3 when a mutant timed out even if others were missed: the files say.
  case $rc in
    0 | 2 | 3) ;;
    *) echo "mutants.sh: cargo mutants ($name) failed with status $rc" >&2; exit "$rc" ;;
  esac
  if [ -s "$out/$name/mutants.out/missed.txt" ]; then
    status=2
  elif [ -s "$out/$name/mutants.out/timeout.txt" ] && [ "$status" = 0 ]; then
    status=3
  fi
done
exit "$status"
