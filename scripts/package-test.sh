#!/usr/bin/env bash
# The package in a real install, on this machine (root; CI's fresh Debian):
#   1. builds the .deb and the archive (scripts/package.sh) and runs lintian (no errors allowed);
#   2. notes the Python websockify's state (Debian's novnc depends on it), installs ours with
#      dpkg -i, and checks that /usr/bin/websockify and `man websockify` are ours and the
#      Python files are kept aside, unchanged;
#   3. runs Debian's novnc_proxy (scripts/e2e.sh --novnc-proxy): noVNC in Chromium connects to
#      a TigerVNC desktop through the websockify novnc_proxy found, proven to be ours;
#   4. removes the package (dpkg -r, then --purge; on any failure an EXIT trap purges it) and
#      checks that everything is exactly as before: files, diversions, the Python websockify.
# Usage: scripts/package-test.sh [--no-build]   (--no-build: package target/release as built)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=demo/lib.sh
. demo/lib.sh

BUILD_ARG=
case "${1:-}" in
  --no-build) BUILD_ARG=--no-build ;;
  "") ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  *) die "unknown option $1" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root: it installs and removes a package"
T0=$(date +%s)
ART=$ROOT/target/package-test
rm -rf "$ART"
mkdir -p "$ART"

echo "== package-test: Debian packages (novnc brings the Python websockify)"
need_debs novnc lintian man-db dpkg-dev binutils iproute2

echo "== package-test: build"
mapfile -t BUILT < <(scripts/package.sh $BUILD_ARG)
DEB=${BUILT[0]}
TARBALL=${BUILT[1]}
printf '   %s\n' "${BUILT[@]}"
VERSION_LINE=$(dpkg-deb --fsys-tarfile "$DEB" | tar -xOf - ./usr/bin/websockify >"$ART/websockify" &&
  chmod +x "$ART/websockify" && "$ART/websockify" --version)
echo "   the package's binary: $VERSION_LINE"

echo "== package-test: the archive"
(cd "$(dirname "$TARBALL")" && sha256sum -c "$(basename "$TARBALL").sha256")
tar -tzf "$TARBALL" | sed 's|^[^/]*/||' | sort | grep -v '/$' | grep . >"$ART/archive.txt"
for f in websockify websockify.1 README.md COPYING COPYING.LESSER completions/websockify.bash \
  completions/_websockify completions/websockify.fish systemd/websockify.service \
  systemd/websockify.socket systemd/websockify@.service; do
  grep -qx "$f" "$ART/archive.txt" || die "$f missing from $TARBALL"
done

echo "== package-test: lintian"
# Errors fail; warnings are shown (none expected: see docs/packaging.md).
lintian --fail-on error --info "$DEB" | tee "$ART/lintian.txt"

# The state to come back to: what owns /usr/bin/websockify and the man page, their contents,
# the diversions.
state() {
  local f
  for f in /usr/bin/websockify /usr/share/man/man1/websockify.1.gz; do
    echo "owner $f: $(dpkg-query -S "$f" 2>&1 | grep -v '^diversion' | tr '\n' ' ')"
    echo "md5 $f: $(md5sum <"$f" 2>&1 | cut -d' ' -f1)"
  done
  echo "diversions: $(dpkg-divert --list '*websockify*' | sort | tr '\n' ' ')"
  echo "dpkg --verify: $(dpkg --verify python3-websockify websockify 2>&1 | tr '\n' ' ')"
}
state >"$ART/before.txt"
grep -q 'python3-websockify' "$ART/before.txt" ||
  die "the Python websockify does not own /usr/bin/websockify before the test: $(cat "$ART/before.txt")"

INSTALLED=0 # until purged: a failed check after `dpkg -r` still purges
restore() {
  local rc=$?
  trap - EXIT
  if [ "$INSTALLED" = 1 ]; then
    echo "== package-test: removing websockify-rs after a failure"
    dpkg --purge websockify-rs >&2 || true
  fi
  exit "$rc"
}
trap restore EXIT

echo "== package-test: dpkg -i"
INSTALLED=1
dpkg -i "$DEB"
[ "$(/usr/bin/websockify --version)" = "$VERSION_LINE" ] ||
  die "/usr/bin/websockify is not ours after install: $(/usr/bin/websockify --version 2>&1 | head -n 1)"
[ "$(command -v websockify)" = /usr/bin/websockify ] || die "websockify on the PATH is $(command -v websockify)"
dpkg-divert --list websockify-rs | tee "$ART/diversions.txt"
[ "$(grep -c 'by websockify-rs' "$ART/diversions.txt")" = 2 ] || die "expected 2 diversions"
# The Python files, kept aside unchanged.
python_md5=$(sed -n 's|^md5 /usr/bin/websockify: ||p' "$ART/before.txt")
[ "$(md5sum </usr/bin/websockify.python | cut -d' ' -f1)" = "$python_md5" ] ||
  die "/usr/bin/websockify.python is not the Python websockify"
/usr/bin/websockify.python --help >/dev/null 2>&1 || die "the Python websockify does not run as websockify.python"
# man websockify: ours (the generated page says what our --version says)
[ -f /usr/share/man/man1/websockify.1.gz ] ||
  die "no /usr/share/man/man1/websockify.1.gz after install (a path-exclude in /etc/dpkg/dpkg.cfg.d/?)"
man_text=$(MANPAGER=cat MANWIDTH=100 man websockify 2>/dev/null)
grep -q "${VERSION_LINE#websockify }" <<<"$man_text" || die "man websockify is not ours"
grep -q 'TOKEN FILES' <<<"$man_text" || die "man websockify has no TOKEN FILES section"
[ -f /usr/share/bash-completion/completions/websockify ] || die "no bash completion installed"
echo "   /usr/bin/websockify: $VERSION_LINE; man websockify: ours; Python kept as websockify.python"

echo "== package-test: Debian's novnc_proxy + noVNC in Chromium + TigerVNC, through ours"
E2E_EXPECT_VERSION=$VERSION_LINE scripts/e2e.sh --no-build --novnc-proxy
cp target/e2e/served-by.txt "$ART/"

echo "== package-test: dpkg -r"
dpkg -r websockify-rs
state >"$ART/after.txt"
if ! diff -u "$ART/before.txt" "$ART/after.txt"; then
  die "the machine is not as it was before the install (diff above)"
fi
/usr/bin/websockify --help 2>&1 | grep -q 'Usage: ' || die "the Python websockify does not run after removal"
[ ! -e /usr/bin/websockify.python ] || die "/usr/bin/websockify.python left behind"
# `dpkg -r` keeps a package with a postrm as "rc" (config-files) until purged, with no file:
# that is where `apt remove` leaves it too. Then purge, to leave dpkg's database as it was.
status=$(dpkg-query -W -f='${Status}' websockify-rs 2>/dev/null || true)
[ "$status" = "deinstall ok config-files" ] || die "websockify-rs after dpkg -r: '$status'"
dpkg --purge websockify-rs
status=$(dpkg-query -W -f='${Status}' websockify-rs 2>/dev/null || true)
case "$status" in
  "" | *not-installed) ;;
  *) die "websockify-rs after dpkg --purge: '$status'" ;;
esac
state >"$ART/after-purge.txt"
diff -u "$ART/before.txt" "$ART/after-purge.txt" || die "dpkg --purge changed the state (diff above)"
INSTALLED=0
echo "   /usr/bin/websockify is the Python one again; nothing of ours is left"
echo "== package-test: passed in $(($(date +%s) - T0)) s (logs in target/package-test/)"
