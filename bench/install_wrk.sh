#!/usr/bin/env bash
# wrk, the load generator for duplicate uploads in bench/ingest_http.py (Debian package; C, so
# the client leaves the cores to the server). Where it cannot be installed the benchmark says
# so and sends the duplicates with the Python client instead.
set -uo pipefail

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends wrk >/dev/null \
    || { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null \
        && $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends wrk >/dev/null; }; then
    wrk --version 2>&1 | head -1
else
    echo "wrk could not be installed: duplicate uploads will be sent by the Python client"
fi
exit 0
