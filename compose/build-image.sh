#!/usr/bin/env bash
# Builds the cairn image from a statically linked release binary (FROM
# scratch: nothing is pulled). Usage: compose/build-image.sh [tag]
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-cairn:local}
TARGET=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile image --target "$TARGET" --quiet
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "target/$TARGET/image/cairn" "$CTX/cairn"
cp compose/Dockerfile "$CTX/Dockerfile"
docker build -q -t "$TAG" "$CTX" >/dev/null
echo "built $TAG"
