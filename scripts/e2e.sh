#!/usr/bin/env bash
# Real-browser end-to-end tests: headless Chromium (Debian's) driven by playwright-core loads
# noVNC from our proxy's --web, connects through our proxy to a real TigerVNC server (ws://,
# then wss:// on the same port), checks the connection and the desktop on the canvas, and
# drives the line console page (web/telnet.html) against a line-oriented TCP service.
#
# Usage (from anywhere in the checkout):
#   scripts/e2e.sh [--no-build] [--novnc-proxy] [-- NODE_TEST_ARGS...]
#   installs what is missing (Debian: chromium tigervnc-standalone-server x11-apps
#   x11-xserver-utils novnc openssl python3; npm ci in e2e/), builds target/release/websockify,
#   starts everything on free loopback ports, runs `node --test` in e2e/, kills it all on exit.
#   Screenshots and logs: target/e2e/.
#   env WEBSOCKIFY_BIN=PATH tests that binary instead of the one built here (for comparing
#   with the Python reference only; CI never sets it).
#   --novnc-proxy: the noVNC tests only, through Debian's /usr/share/novnc/utils/novnc_proxy,
#   which runs whatever `websockify` is on the PATH (scripts/package-test.sh installs ours
#   first). Which binary served is proven from the listening process (its executable and its
#   --version, written to target/e2e/served-by.txt); env E2E_EXPECT_VERSION makes a different
#   --version a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=demo/lib.sh
. demo/lib.sh

BUILD=1
NOVNC_PROXY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --novnc-proxy) NOVNC_PROXY=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done

T0=$(date +%s)
ART="$ROOT/target/e2e"
rm -rf "$ART"
mkdir -p "$ART"
TMP=$(mktemp -d /tmp/websockify-e2e.XXXXXX)
TESTS_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$TESTS_PID" ]; then kill -TERM -- "-$TESTS_PID" 2>/dev/null || true; wait "$TESTS_PID" 2>/dev/null || true; fi
  stop_all
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== e2e: packages"
need_debs chromium tigervnc-standalone-server x11-apps x11-xserver-utils novnc openssl python3
command -v node >/dev/null && command -v npm >/dev/null || need_debs nodejs npm
NOVNC=/usr/share/novnc
[ -f "$NOVNC/vnc.html" ] && [ -f "$NOVNC/core/rfb.js" ] || die "noVNC not found in $NOVNC"

echo "== e2e: npm ci (e2e/)"
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

if [ -n "${WEBSOCKIFY_BIN:-}" ]; then
  WS=$WEBSOCKIFY_BIN
  echo "== e2e: testing WEBSOCKIFY_BIN=$WS (not built here)"
else
  WS="${CARGO_TARGET_DIR:-$ROOT/target}/release/websockify"
  if [ "$BUILD" = 1 ]; then
    echo "== e2e: cargo build --release"
    # wsbench too: the same build as every script's, so none rebuilds websockify
    # (scripts/conformance.sh says why).
    cargo build --release -p websockify -p wsbench
  fi
fi
[ -x "$WS" ] || die "$WS missing (build it, or drop --no-build)"

echo "== e2e: servers"
# a certificate for wss://, cert and key in one PEM
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.log" ||
  { cat "$TMP/openssl.log" >&2; die "openssl req failed"; }
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/self.pem"

mapfile -t P < <(free_ports 4)
VNC_PORT=${P[0]} PROXY_PORT=${P[1]} LINE_PORT=${P[2]} CONSOLE_PORT=${P[3]}
DISP=$(free_display)

start_desktop "$DISP" "$VNC_PORT" "$ART"
spawn "$ART/lineserver.log" python3 demo/lineserver.py "$LINE_PORT"
LINE_PID=$!
# noVNC and the VNC server behind one port, ws:// and wss://
if [ "$NOVNC_PROXY" = 1 ]; then
  # Debian's launcher, as a user runs it; it finds websockify on the PATH
  spawn "$ART/proxy-novnc.log" "$NOVNC/utils/novnc_proxy" --listen "$PROXY_PORT" \
    --vnc "127.0.0.1:$VNC_PORT" --cert "$TMP/self.pem" --web "$NOVNC"
else
  spawn "$ART/proxy-novnc.log" "$WS" --cert "$TMP/self.pem" --web "$NOVNC" \
    "127.0.0.1:$PROXY_PORT" "127.0.0.1:$VNC_PORT"
fi
NOVNC_PID=$!
# the line console page and the line service behind another
spawn "$ART/proxy-console.log" "$WS" --cert "$TMP/self.pem" --web "$ROOT/web" \
  "127.0.0.1:$CONSOLE_PORT" "127.0.0.1:$LINE_PORT"
CONSOLE_PID=$!
wait_port "$LINE_PORT" 10 "$LINE_PID" || { cat "$ART/lineserver.log" >&2; die "line server did not start"; }
for pair in "novnc:$PROXY_PORT:$NOVNC_PID" "console:$CONSOLE_PORT:$CONSOLE_PID"; do
  IFS=: read -r name port pid <<<"$pair"
  wait_port "$port" 15 "$pid" || {
    cat "$ART/proxy-$name.log" >&2
    die "proxy ($name) did not start on port $port: does $WS support --web?"
  }
done
# served_by PORT : "PID EXE" of the process listening on PORT
served_by() {
  local pid
  pid=$(ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
  [ -n "$pid" ] || return 1
  echo "$pid $(readlink "/proc/$pid/exe")"
}
if [ "$NOVNC_PROXY" = 1 ]; then
  read -r SERVER_PID SERVER_EXE < <(served_by "$PROXY_PORT") || die "nothing listens on $PROXY_PORT"
  SERVER_VERSION=$("/proc/$SERVER_PID/exe" --version 2>&1 || true)
  {
    echo "novnc_proxy: $(grep -m 1 'websockify at' "$ART/proxy-novnc.log" || echo '(no websockify line)')"
    echo "listening on :$PROXY_PORT: pid $SERVER_PID, executable $SERVER_EXE"
    echo "its --version: $SERVER_VERSION"
  } | tee "$ART/served-by.txt"
  if [ -n "${E2E_EXPECT_VERSION:-}" ] && [ "$SERVER_VERSION" != "$E2E_EXPECT_VERSION" ]; then
    die "noVNC is served by $SERVER_EXE ('$SERVER_VERSION'), not '$E2E_EXPECT_VERSION'"
  fi
  set -- --test-name-pattern=noVNC "$@"
fi
echo "   X :$DISP  VNC 127.0.0.1:$VNC_PORT  noVNC proxy :$PROXY_PORT  line service :$LINE_PORT  console proxy :$CONSOLE_PORT"
echo "   ready after $(($(date +%s) - T0)) s"

echo "== e2e: browser tests"
export E2E_PROXY_PORT=$PROXY_PORT E2E_CONSOLE_PORT=$CONSOLE_PORT E2E_ARTIFACTS=$ART
export E2E_DESKTOP_BG=$DESKTOP_BG E2E_CHROMIUM=${E2E_CHROMIUM:-/usr/bin/chromium}
# node and the browser it starts run in their own process group, so that cleanup (or the
# 300 s bound) ends the browser too
cd e2e
setsid timeout 300 node --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$ART/results.tap" "$@" &
TESTS_PID=$!
cd "$ROOT"
set +e
wait "$TESTS_PID"
rc=$?
set -e
TESTS_PID=
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$ART/results.tap" 2>/dev/null | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$ART/results.tap" 2>/dev/null | tail -n 1)
[ "$rc" = 0 ] || [ "${failed:-0}" != 0 ] || failed=1 # the runner itself failed or timed out
# A run that discovered no test would pass: it must not.
if [ "$rc" = 0 ] && [ "${passed:-0}" = 0 ]; then
  echo "e2e: FAILED: no test ran (none discovered in e2e/?)"
  rc=1
fi
if [ "$NOVNC_PROXY" = 1 ] && [ "$rc" = 0 ]; then
  # the process that was checked above is still the one listening: it served the browser
  read -r pid_after _ < <(served_by "$PROXY_PORT") || pid_after=
  if [ "$pid_after" != "$SERVER_PID" ]; then
    echo "e2e: FAILED: pid $SERVER_PID no longer listens on $PROXY_PORT (now: ${pid_after:-none})"
    rc=1
  fi
fi
echo "== e2e: done in $(($(date +%s) - T0)) s (artifacts in target/e2e/)"
echo "e2e: ${passed:-0} passed, ${failed:-0} failed"
exit $rc
