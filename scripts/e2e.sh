#!/usr/bin/env bash
# Real-browser end-to-end tests: headless Chromium (Debian's) driven by playwright-core loads
# noVNC from our proxy's --web, connects through our proxy to a real TigerVNC server (ws://,
# then wss:// on the same port), checks the connection and the desktop on the canvas, and
# drives the line console page (web/telnet.html) against a line-oriented TCP service.
#
# Usage (from anywhere in the checkout): scripts/e2e.sh [--no-build] [-- NODE_TEST_ARGS...]
#   installs what is missing (Debian: chromium tigervnc-standalone-server x11-apps
#   x11-xserver-utils novnc openssl python3; npm ci in e2e/), builds target/release/websockify,
#   starts everything on free loopback ports, runs `node --test` in e2e/, kills it all on exit.
#   Screenshots and logs: target/e2e/.
#   env WEBSOCKIFY_BIN=PATH tests that binary instead of the one built here (for comparing
#   with the Python reference only; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=demo/lib.sh
. demo/lib.sh

BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
    cargo build --release --bin websockify
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
spawn "$ART/proxy-novnc.log" "$WS" --cert "$TMP/self.pem" --web "$NOVNC" \
  "127.0.0.1:$PROXY_PORT" "127.0.0.1:$VNC_PORT"
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
echo "== e2e: done in $(($(date +%s) - T0)) s (artifacts in target/e2e/)"
echo "e2e: ${passed:-0} passed, ${failed:-0} failed"
exit $rc
