#!/usr/bin/env bash
# The plain tools the tests and the README's commands use: curl (the README's upload example,
# tests/test_server.py) and git (tests/test_readme_journeys.py clones the repository).
# Idempotent: does nothing when both are there.
set -euo pipefail
if command -v curl >/dev/null && command -v git >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends ca-certificates curl git
