#!/usr/bin/env bash
# PostgreSQL 15 server binaries for the catalog tests (tests/services/postgres.py starts a
# throwaway cluster on 127.0.0.1 from them). Idempotent: does nothing when they are there.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/pg_ctl ] || [ -n "${IMGEST_TEST_PG_BIN:-}" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
# postgresql-15 only: the server and initdb, no cluster is created or started by the tests'
# setup (Debian's postgresql-common may create and start a default one; the tests never use it).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends postgresql-15
