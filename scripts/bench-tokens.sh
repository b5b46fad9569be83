#!/usr/bin/env bash
# Session churn with token plugins next to churn without: 16 clients looping connect, upgrade,
# one 64 B echo, close (`wsbench load --mode handshake`), through our release proxy with
#   - a fixed target (no tokens),
#   - --token-plugin TokenFile with a 10,000-line token file (stat per lookup, read on change),
#   - --token-plugin ReadOnlyTokenFile with the same file (read once),
#   - --token-plugin TokenRedis with a real redis-server on loopback holding the same 10,000
#     tokens (one multiplexed connection, a GET per lookup), when redis-server is installed,
#   - --token-plugin JWTTokenApi with an HS256 token (a symmetric key file), and, when the
#     reference's Python with jwcrypto is at $JWCRYPTO_PYTHON (default /tmp/ref/bin/python),
#     with RS256 and with RS256 nested in RSA-OAEP-256/A256GCM (tests/fixtures/jwt/rsa.pem),
# the runs interleaved, medians of RUNS. Loopback only; everything started is killed on exit.
# Usage: scripts/bench-tokens.sh [--runs N] [--duration S] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 DURATION=3 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "bench-tokens: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$BUILD" = 1 ] && cargo build --release -q -p websockify && cargo build --release -q -p wsbench
BIN=${CARGO_TARGET_DIR:-target}/release
TMP=$(mktemp -d /tmp/bench-tokens.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

echo_port=$("$BIN/wsbench" free-port)
"$BIN/wsbench" echo-server --listen "127.0.0.1:$echo_port" >/dev/null 2>&1 &
pids+=($!)
for i in $(seq 1 10000); do echo "desk-$i: 127.0.0.1:$echo_port"; done > "$TMP/tokens"

start() { # name args... -> prints the port
  local port; port=$("$BIN/wsbench" free-port)
  RUST_LOG=warn "$BIN/websockify" "$@" "127.0.0.1:$port" ${FIXED:+"127.0.0.1:$echo_port"} \
    >"$TMP/proxy-$port.log" 2>&1 &
  pids+=($!)
  "$BIN/wsbench" wait-port "127.0.0.1:$port" >/dev/null
  echo "$port"
}
redis_port=""
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  redis_port=$("$BIN/wsbench" free-port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$TMP/redis.log" 2>&1 &
  pids+=($!)
  "$BIN/wsbench" wait-port "127.0.0.1:$redis_port" >/dev/null
  for i in $(seq 1 10000); do echo "SET desk-$i 127.0.0.1:$echo_port"; done |
    redis-cli -p "$redis_port" >/dev/null
fi
# JWTTokenApi: a fresh symmetric key (base64url text, as the reference reads it), an HS256 token.
python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(), end="")' \
  >"$TMP/jwt.key"
jwt_token=$(python3 - "$TMP/jwt.key" "$echo_port" <<'PY'
import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = base64.urlsafe_b64decode(open(sys.argv[1]).read() + "=")
head = b64(b'{"alg":"HS256"}') + "." + b64(json.dumps({"host": "127.0.0.1", "port": int(sys.argv[2])}).encode())
print(head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest()))
PY
)
JWCRYPTO_PYTHON=${JWCRYPTO_PYTHON:-/tmp/ref/bin/python}
rsa_tokens=""
if [ -x "$JWCRYPTO_PYTHON" ] && "$JWCRYPTO_PYTHON" -c 'import jwcrypto' 2>/dev/null; then
  rsa_tokens=$("$JWCRYPTO_PYTHON" - tests/fixtures/jwt/rsa.pem "$echo_port" <<'PY'
import sys
from jwcrypto import jwk, jwt
key = jwk.JWK.from_pem(open(sys.argv[1], "rb").read())
inner = jwt.JWT(header={"alg": "RS256"}, claims={"host": "127.0.0.1", "port": int(sys.argv[2])})
inner.make_signed_token(key)
outer = jwt.JWT(header={"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}, claims=inner.serialize())
outer.make_encrypted_token(key)
print(inner.serialize(), outer.serialize())
PY
)
fi
fixed=$(FIXED=1 start)
tokenfile=$(start --token-plugin TokenFile --token-source "$TMP/tokens")
readonly_=$(start --token-plugin ReadOnlyTokenFile --token-source "$TMP/tokens")
kinds="fixed tokenfile readonly"
jwt=$(start --token-plugin JWTTokenApi --token-source "$TMP/jwt.key")
kinds="$kinds jwt-hs256"
if [ -n "$rsa_tokens" ]; then
  read -r rs256_token oaep_token <<<"$rsa_tokens"
  jwt_rsa=$(start --token-plugin JWTTokenApi --token-source tests/fixtures/jwt/rsa.pem)
  kinds="$kinds jwt-rs256 jwt-oaep"
fi
if [ -n "$redis_port" ]; then
  redis=$(start --token-plugin TokenRedis --token-source "127.0.0.1:$redis_port")
  kinds="$kinds redis"
fi

churn() { # port query -> sessions/s
  "$BIN/wsbench" load --url "ws://127.0.0.1:$1/websockify$2" --mode handshake --conns 16 \
    --size 64 --duration "$DURATION" --warmup 1 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f %d" % (d["msgs_per_s"], d["errors"]))'
}
declare -A results
for run in $(seq 1 "$RUNS"); do
  for kind in $kinds; do
    case $kind in
      redis) out=$(churn "$redis" "?token=desk-5000") ;;
      fixed) out=$(churn "$fixed" "") ;;
      tokenfile) out=$(churn "$tokenfile" "?token=desk-5000") ;;
      readonly) out=$(churn "$readonly_" "?token=desk-5000") ;;
      jwt-hs256) out=$(churn "$jwt" "?token=$jwt_token") ;;
      jwt-rs256) out=$(churn "$jwt_rsa" "?token=$rs256_token") ;;
      jwt-oaep) out=$(churn "$jwt_rsa" "?token=$oaep_token") ;;
    esac
    read -r rate errors <<<"$out"
    [ "$errors" = 0 ] || { echo "bench-tokens: $kind run $run had $errors errors" >&2; exit 1; }
    results[$kind]+="$rate "
    echo "run $run $kind: $rate sessions/s" >&2
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median "${results[fixed]}")
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in $kinds; do
  m=$(median "${results[$kind]}")
  printf '%-10s %8s sessions/s  %5.2fx of fixed\n' "$kind" "$m" "$(python3 -c "print($m/$base)")"
done
