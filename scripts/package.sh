#!/usr/bin/env bash
# Builds what a user installs, from this checkout, with dpkg-deb (no cargo-deb, no debhelper):
#   target/dist/websockify-rs_VERSION_amd64.deb
#   target/dist/websockify-VERSION-x86_64-linux.tar.gz and its .sha256
# Both carry the release binary (stripped), the man page and the bash/zsh/fish completions
# (generated from the command-line definition: `cargo xtask gen`), the README and the licence;
# the .deb also the example systemd units, a changelog, and the diversion of the Python
# websockify's /usr/bin/websockify (packaging/debian/preinst, postrm).
#
# Usage: scripts/package.sh [--no-build]
#   --no-build  package the target/release/websockify already built (CI: built by e2e)
# Needs: dpkg-dev (dpkg-shlibdeps), binutils (strip), gzip, tar, sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
die() { printf 'package.sh: %s\n' "$*" >&2; exit 1; }

BUILD=1
case "${1:-}" in
  --no-build) BUILD=0 ;;
  "") ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) die "unknown option $1" ;;
esac

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/websockify
if [ "$BUILD" = 1 ]; then
  cargo build --release --bin websockify
fi
[ -x "$BIN" ] || die "$BIN missing (build it, or drop --no-build)"

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
# The binary must be this checkout's: its --version names the commit build.rs saw.
SHOWN=$("$BIN" --version)
case "$SHOWN" in
  "websockify $VERSION (commit "*")") ;;
  *) die "$BIN --version says '$SHOWN', not version $VERSION: rebuild it" ;;
esac
# The man page (built now, from this checkout) says the same version: one commit for all.
HEAD=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ "$SHOWN" = "websockify $VERSION (commit $HEAD)" ] ||
  die "$BIN is '$SHOWN' but the checkout is at commit $HEAD: rebuild it (drop --no-build)"

# Reproducible: every date and mtime is the commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
MAINTAINER=${DEB_MAINTAINER:-"$(git config user.name) <$(git config user.email)>"}

# What the binary links against: glibc (libc, libm) and libgcc_s (the unwinder Rust's std
# links on linux-gnu; Debian's libgcc-s1 is required on every system). Anything more fails.
LIBS=$(ldd "$BIN" | awk '{print $1}' | sed 's|.*/||' | sort)
for lib in $LIBS; do
  case "$lib" in
    linux-vdso.so.1 | ld-linux-x86-64.so.2 | libc.so.6 | libm.so.6 | libgcc_s.so.1) ;;
    *) die "$BIN links against $lib: only libc, libm and libgcc_s are expected (README, Install)" ;;
  esac
done

DIST=$TARGET_DIR/dist
rm -rf "$DIST"
mkdir -p "$DIST"
GEN=$DIST/gen
cargo xtask gen "$GEN" >/dev/null
STRIPPED=$DIST/websockify
strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$STRIPPED" "$BIN"

# ---- the .deb ----
PKG=websockify-rs
ARCH=amd64
DEB_ROOT=$DIST/deb
DOC=$DEB_ROOT/usr/share/doc/$PKG
install -d -m 0755 "$DEB_ROOT/DEBIAN" "$DEB_ROOT/usr/bin" "$DEB_ROOT/usr/share/man/man1" \
  "$DEB_ROOT/usr/share/bash-completion/completions" "$DEB_ROOT/usr/share/zsh/vendor-completions" \
  "$DEB_ROOT/usr/share/fish/vendor_completions.d" "$DOC/examples"
install -m 0755 "$STRIPPED" "$DEB_ROOT/usr/bin/websockify"
gzip -9n <"$GEN/man/websockify.1" >"$DEB_ROOT/usr/share/man/man1/websockify.1.gz"
install -m 0644 "$GEN/completions/websockify.bash" "$DEB_ROOT/usr/share/bash-completion/completions/websockify"
install -m 0644 "$GEN/completions/_websockify" "$DEB_ROOT/usr/share/zsh/vendor-completions/_websockify"
install -m 0644 "$GEN/completions/websockify.fish" "$DEB_ROOT/usr/share/fish/vendor_completions.d/websockify.fish"
install -m 0644 contrib/systemd/websockify@.service contrib/systemd/websockify.service \
  contrib/systemd/websockify.socket "$DOC/examples/"
gzip -9n <README.md >"$DOC/README.md.gz"
chmod 0644 "$DOC/README.md.gz" "$DEB_ROOT/usr/share/man/man1/websockify.1.gz"

# A native package's changelog: one entry for this build.
CHANGELOG_DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat >"$DIST/changelog" <<EOF
$PKG ($VERSION) unstable; urgency=medium

  * Built from commit $HEAD of websockify (Rust), a drop-in
    replacement for the Python websockify 0.13.0.

 -- $MAINTAINER  $CHANGELOG_DATE
EOF
gzip -9n <"$DIST/changelog" >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# The crates built into the binary, with their licences, for the copyright file.
CRATES=$(cargo tree -p websockify -e normal --prefix none --format '{p}: {l}' 2>/dev/null |
  sed 's/ (proc-macro)//; s/ (\*)$//' | grep -v '^websockify v' | sort -u |
  sed 's/^/ /') || CRATES=" (cargo tree unavailable)"
cat >"$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: websockify (Rust)
Comment: The binary links these Rust crates in statically (name version: licence):
$CRATES

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) The websockify (Rust) authors
License: LGPL-3
 This program is free software: you can redistribute it and/or modify it under
 the terms of the GNU Lesser General Public License version 3 as published by
 the Free Software Foundation.
 .
 On Debian systems, the complete text of the GNU Lesser General Public License
 version 3 can be found in "/usr/share/common-licenses/LGPL-3", and the GNU
 General Public License version 3 it builds on in
 "/usr/share/common-licenses/GPL-3".
EOF
chmod 0644 "$DOC/copyright"

# Depends: what dpkg-shlibdeps finds the binary needs (libc6, libgcc-s1 with versions).
SHLIBS_DIR=$DIST/shlibdeps
mkdir -p "$SHLIBS_DIR/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$SHLIBS_DIR/debian/control"
DEPENDS=$(cd "$SHLIBS_DIR" && dpkg-shlibdeps -O "$DEB_ROOT/usr/bin/websockify" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || die "dpkg-shlibdeps found no dependencies"

install -m 0755 packaging/debian/preinst packaging/debian/postrm "$DEB_ROOT/DEBIAN/"
INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$DEB_ROOT" | cut -f1)
cat >"$DEB_ROOT/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_SIZE
Depends: $DEPENDS
Provides: websockify
Section: net
Priority: optional
Description: WebSocket-to-TCP bridge, drop-in for the Python websockify
 websockify lets a browser (noVNC above all) talk to a plain TCP service such
 as a VNC server: it accepts WebSocket connections, ws:// and wss:// on the
 same port, and bridges each one to a TCP or Unix socket target.
 .
 This is a rewrite in Rust with the Python websockify's command line, token
 and auth plugins and web server, as one multi-threaded binary with bounded
 memory per connection.
 .
 Installing it makes /usr/bin/websockify this program (the Python one is
 diverted to /usr/bin/websockify.python), so Debian's novnc uses it;
 removing it puts the Python one back.
EOF
(cd "$DEB_ROOT" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$DEB_ROOT/DEBIAN/md5sums"
chmod 0644 "$DEB_ROOT/DEBIAN/control" "$DEB_ROOT/DEBIAN/md5sums"
find "$DEB_ROOT" -type d -exec chmod 0755 {} +
find "$DEB_ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
DEB=$DIST/${PKG}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$DEB_ROOT" "$DEB" >/dev/null

# ---- the release archive ----
NAME=websockify-$VERSION-x86_64-linux
STAGE=$DIST/$NAME
install -d -m 0755 "$STAGE/completions"
install -m 0755 "$STRIPPED" "$STAGE/websockify"
install -m 0644 "$GEN/man/websockify.1" "$STAGE/websockify.1"
install -m 0644 "$GEN/completions/websockify.bash" "$GEN/completions/_websockify" \
  "$GEN/completions/websockify.fish" "$STAGE/completions/"
install -m 0644 README.md COPYING COPYING.LESSER "$STAGE/"
install -d -m 0755 "$STAGE/systemd"
install -m 0644 contrib/systemd/websockify@.service contrib/systemd/websockify.service \
  contrib/systemd/websockify.socket "$STAGE/systemd/"
TARBALL=$DIST/$NAME.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$DIST" -cf - "$NAME" | gzip -9n >"$TARBALL"
(cd "$DIST" && sha256sum "$NAME.tar.gz" >"$NAME.tar.gz.sha256")

rm -rf "$SHLIBS_DIR" "$DIST/changelog" "$STRIPPED"
echo "$DEB"
echo "$TARBALL"
echo "$TARBALL.sha256"
echo "links against: $(echo "$LIBS" | tr '\n' ' ')"
echo "Depends: $DEPENDS"
