#!/usr/bin/env bash
# Builds the cairn image from a statically linked release binary and Debian's
# static busybox (FROM scratch: nothing is pulled), then checks that the
# image's shell runs and finds `consul` on PATH.
# Usage: compose/build-image.sh [tag]
# Honours CARGO_TARGET_DIR; BUSYBOX overrides the busybox binary to copy
# (default /bin/busybox, from the busybox-static package).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-cairn:local}
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BUSYBOX=${BUSYBOX:-/bin/busybox}
die() { echo "build-image: $*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found; install Debian's busybox-static (apt-get install busybox-static)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile image --target "$TARGET" --quiet

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
ROOT=$CTX/rootfs
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root"
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
cp "$TARGET_DIR/$TARGET/image/cairn" "$ROOT/bin/cairn"
cp "$BUSYBOX" "$ROOT/bin/busybox"
# Relative links, so they resolve inside the image whatever the host paths.
for applet in $("$BUSYBOX" --list); do
  case $applet in busybox | cairn | consul) continue ;; esac
  ln -s busybox "$ROOT/bin/$applet"
done
ln -s cairn "$ROOT/bin/consul"
ln -s bin/cairn "$ROOT/cairn"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
cp compose/Dockerfile "$CTX/Dockerfile"
docker build -q -t "$TAG" "$CTX" >/dev/null

out=$(docker run --rm --entrypoint sh "$TAG" -c 'touch /tmp/.w && rm /tmp/.w && consul version' 2>&1) \
  || die "the image's shell does not run (is $BUSYBOX statically linked? Debian's busybox-static is): $out"
case $out in "Consul v"*) ;; *) die "consul version in the image printed: $out" ;; esac
echo "built $TAG"
