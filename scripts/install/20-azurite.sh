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
command -v npm >/dev/null || { echo "20-azurite.sh: npm (Node.js 20+) is needed" >&2; exit 1; }
mkdir -p "$DEST"
npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
"$BIN" --version
