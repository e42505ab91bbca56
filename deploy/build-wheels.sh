#!/usr/bin/env bash
# Build the gradserve wheel and fetch wheels of all its dependencies, so the image build needs no network.
#
# Usage: deploy/build-wheels.sh            (run from anywhere; needs python3 with pip, and PyPI)
#   GRADSERVE_WHEEL_DIR  output folder (default deploy/.cache/wheels), holding app/ and deps/
#   PYTHON               interpreter whose pip is used (default python3)
#
# The dependency wheels are chosen for CPython 3.11 (the Python of both base images) on this machine's
# CPU and C library; pip's cache makes reruns fast. The source is copied to a scratch folder first so
# the build never writes build/, *.egg-info or generated code into the work tree.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${GRADSERVE_WHEEL_DIR:-$HERE/.cache/wheels}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

log() { echo "[build-wheels] $*" >&2; }

SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
tar -C "$ROOT" \
    --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=./deploy --exclude=./tests --exclude=./bench --exclude=./client/v1 \
    -cf - . | tar -C "$SRC" -xf -

rm -rf "$OUT/app.tmp"
mkdir -p "$OUT/app.tmp"
log "building the gradserve wheel"
# Build isolation fetches the build requirements (setuptools, wheel, grpcio-tools) from PyPI, exactly
# as a user's `pip install .` would; the host's installed packages play no part.
"$PYTHON" -m pip wheel -q --no-deps -w "$OUT/app.tmp" "$SRC"
rm -rf "$OUT/app"
mv "$OUT/app.tmp" "$OUT/app"
APP_WHEEL=$(ls "$OUT"/app/gradserve-*.whl)

log "fetching dependency wheels for cp311"
# A fresh folder each time, so wheels of superseded versions do not pile up in the build context.
rm -rf "$OUT/deps.tmp"
"$PYTHON" -m pip download -q --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    -d "$OUT/deps.tmp" "$APP_WHEEL"
# pip download copies the app wheel next to its dependencies; keep it only under app/ so the
# dependency layer of the image stays cached when only gradserve changes.
rm -f "$OUT"/deps.tmp/gradserve-*.whl
rm -rf "$OUT/deps"
mv "$OUT/deps.tmp" "$OUT/deps"
log "$(basename "$APP_WHEEL") + $(ls "$OUT/deps" | wc -l) dependency wheels in $OUT"
