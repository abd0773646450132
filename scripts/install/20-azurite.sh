#!/bin/bash
# Azurite (the Azure Storage emulator) for the Azure blob tests, into .cache/azurite (git-ignored).
# 3.35.0 is the last release that runs on Node 20 (3.36+ needs Node 22). Quick when present.
set -euo pipefail
VERSION=3.35.0
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="$ROOT/.cache/azurite"
BIN="$DEST/node_modules/.bin/azurite-blob"
if [ -x "$BIN" ] && grep -q "\"version\": \"$VERSION\"" "$DEST/node_modules/azurite/package.json" 2>/dev/null; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    # Debian 12 has Node.js 18; Azurite 3.35.0 asks for node >= 10 (its package.json), but the
    # tests ran it on Node 20 only.
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends nodejs npm
fi
mkdir -p "$DEST"
npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
"$BIN" --version
