#!/bin/bash
# Ceph radosgw + one mon + one (memstore) OSD from Debian, for the S3 tests. Quick when present.
set -euo pipefail
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null \
    && command -v radosgw-admin >/dev/null && command -v monmaptool >/dev/null; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Refresh the package lists only when they do not know radosgw yet.
if ! apt-cache show radosgw >/dev/null 2>&1; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends radosgw ceph-mon ceph-osd
