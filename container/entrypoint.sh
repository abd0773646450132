#!/bin/sh
# The container's entrypoint: check the settings, then exec `imgest serve` on 0.0.0.0 with
# API keys on (IMGEST_AUTH=keys unless set otherwise). Also:
#   entrypoint.sh healthcheck    exit 0 when GET /healthz answers 200 (the image's HEALTHCHECK)
#   entrypoint.sh imgest ...     any other command runs as given (e.g. `imgest keys create`)
# It runs outside a container as well (tests/test_container.py does that on loopback).
set -eu

export IMGEST_HOST="${IMGEST_HOST:-0.0.0.0}"
export IMGEST_AUTH="${IMGEST_AUTH:-keys}"
export IMGEST_PORT="${IMGEST_PORT:-8000}"


case "${1:-serve}" in
    healthcheck)
        exec python3 - <<'PY'
import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ['IMGEST_PORT']}/healthz"
try:
    with urllib.request.urlopen(url, timeout=3) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"healthcheck: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
        ;;
    serve)
        [ "$#" -gt 0 ] && shift
        # Settings errors (a bad URL, a value out of range, an unknown IMGEST_* key) stop here
        # with imgest's own sentence and exit status 2, before anything is opened.
        if ! imgest config >/dev/null; then
            echo "entrypoint: the settings above are invalid; imgest serve not started" >&2
            exit 2
        fi
        if [ "${IMGEST_AUTH}" = "off" ]; then
            echo "entrypoint: IMGEST_AUTH=off: every client that reaches ${IMGEST_HOST}:${IMGEST_PORT} may upload and delete" >&2
        fi
        exec imgest serve "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
