# Shared by ./demo and scripts/e2e.sh (sourced, not run): installing Debian packages,
# free loopback ports and X displays, bounded waits, a TigerVNC desktop, and killing
# everything that was started.
# shellcheck shell=bash

# ---- process bookkeeping: every pid started with `spawn` is killed by `stop_all` ----
PIDS=()
spawn() { # spawn LOGFILE CMD ARGS... : run in the background, remember the pid in $!
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
}
stop_all() {
  local pid i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do # bounded: 50 x 0.1 s, then SIGKILL
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

log() { printf '%s\n' "$*" >&2; }
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# keep_logs DIR : at exit, keep DIR's logs and say where they are; the rest goes (the TLS key
# and certificate with it). A DIR with no log in it is removed.
keep_logs() {
  local dir=$1
  rm -f "$dir"/*.pem
  if compgen -G "$dir/*.log" >/dev/null; then
    log "logs kept in $dir"
  else
    rm -rf "$dir"
  fi
}

# ---- Debian packages: install only the missing ones ----
# need_debs PKG... ; apt-get update runs once, only if something is missing.
need_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "== installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# ---- ports, displays, waits ----
# free_ports N : N distinct free TCP ports on 127.0.0.1, one per line (the kernel picks them).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}
# port_free PORT : true if nothing listens on 127.0.0.1:PORT
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_display : an X display number with no lock file and no socket
free_display() {
  local n
  for n in $(seq 20 99); do
    [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || { echo "$n"; return 0; }
  done
  die "no free X display number in :20-:99"
}
# wait_port PORT SECONDS [PID] : poll until 127.0.0.1:PORT accepts a connection; fail early
# if PID (the process that should listen) has exited.
wait_port() {
  local port=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}
# wait_file PATH SECONDS
wait_file() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}

# ---- the desktop ----
# start_desktop DISPLAY RFBPORT LOGDIR : Xtigervnc on loopback (no password), a fixed
# geometry, a solid background and a few X clients, so the screen is never blank.
DESKTOP_BG='#3465a4'
start_desktop() {
  local d=$1 port=$2 logdir=$3
  spawn "$logdir/Xtigervnc.log" Xtigervnc ":$d" -rfbport "$port" -localhost yes \
    -SecurityTypes None -AlwaysShared -geometry 1024x768 -depth 24 -desktop "websockify demo"
  local xpid=$!
  wait_port "$port" 20 "$xpid" && wait_file "/tmp/.X11-unix/X$d" 10 || {
    cat "$logdir/Xtigervnc.log" >&2
    die "Xtigervnc :$d did not come up on port $port"
  }
  DISPLAY=":$d" xsetroot -solid "$DESKTOP_BG"
  spawn "$logdir/xclock.log" env DISPLAY=":$d" xclock -geometry 260x260+60+60 -update 1 \
    -bg '#fdf6e3' -fg '#222222' -hd '#cc3333' -hl '#cc3333'
  spawn "$logdir/xeyes.log" env DISPLAY=":$d" xeyes -geometry 320x220+420+80
  spawn "$logdir/xlogo.log" env DISPLAY=":$d" xlogo -geometry 220x220+120+420 \
    -bg '#ffd54f' -fg '#111111'
}
