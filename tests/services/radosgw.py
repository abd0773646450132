"""Ceph radosgw (S3) on 127.0.0.1: one mon, one memstore OSD and one gateway, for the S3 tests.

Installed by `scripts/install/30-ceph.sh` (Debian packages radosgw, ceph-mon, ceph-osd). The
session fixture `radosgw` builds a throwaway single-node cluster under a temporary folder (auth
off, messenger in crc mode, one tiny-PG pool per rgw pool), creates an S3 user, and tears it
all down at the end. `stop()` / `start()` take the gateway alone away and bring it back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.services.imgest_server import free_port, wait_for_tcp

ACCESS_KEY = "imgest-test"
SECRET_KEY = "imgest-test-secret"
REGION = "us-east-1"

CONF = """\
[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_mon_client_mode = crc
ms_client_mode = crc
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
run_dir = {root}/run
log_file = {root}/log/$name.log
admin_socket = {root}/run/$name.asok
mon_data = {root}/mon/$name
osd_data = {root}/osd/$name
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_journal_size = 0
[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_dns_name = localhost
"""


class Radosgw:
    """A single-node Ceph cluster with an S3 gateway and one user (ACCESS_KEY/SECRET_KEY)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rgw_port = free_port()
        self.mon_port = free_port()
        self.conf = root / "ceph.conf"
        self.env = {**os.environ, "CEPH_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoint(self) -> str:
        """`http://127.0.0.1:<port>`: the gateway (path-style addressing)."""
        return f"http://127.0.0.1:{self.rgw_port}"

    def url_for(self, bucket: str, prefix: str = "") -> str:
        """An imgest storage URL (`s3://...`) for `bucket` on this gateway, keys included."""
        path = f"{bucket}/{prefix}" if prefix else bucket
        return (
            f"s3://{path}?endpoint={quote(self.endpoint, safe='')}&region={REGION}"
            f"&key_id={ACCESS_KEY}&secret={SECRET_KEY}"
        )

    @staticmethod
    def new_bucket() -> str:
        """A fresh, valid bucket name."""
        return f"t-{uuid.uuid4().hex}"

    def _run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            args, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def _spawn(self, name: str, *args: str) -> None:
        with (self.root / "log" / f"{name}.out").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                args, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT
            )

    def setup(self, timeout: float = 120.0) -> None:
        """Create and start mon, OSD and gateway; create the S3 user."""
        for tool in ("ceph", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: run `make test-deps` (30-ceph.sh)")
        for sub in ("mon", "osd", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(
            CONF.format(fsid=fsid, root=self.root, mon_port=self.mon_port, rgw_port=self.rgw_port)
        )
        monmap = str(self.root / "monmap")
        addr = f"v2:127.0.0.1:{self.mon_port}"
        self._run("monmaptool", "--create", "--add", "a", addr, "--fsid", fsid, monmap)
        self._run("ceph-mon", "-i", "a", "--mkfs", "--monmap", monmap)
        self._spawn("mon", "ceph-mon", "-f", "-i", "a")
        osd = self._run("ceph", "osd", "create").strip()
        (self.root / "osd" / f"osd.{osd}").mkdir()
        self._run("ceph-osd", "-i", osd, "--mkfs")
        self._run("ceph", "osd", "crush", "add-bucket", "localhost", "host")
        self._run("ceph", "osd", "crush", "move", "localhost", "root=default")
        self._run("ceph", "osd", "crush", "add", f"osd.{osd}", "1.0", "host=localhost")
        self._spawn("osd", "ceph-osd", "-f", "-i", osd)
        deadline = time.monotonic() + timeout
        while json.loads(self._run("ceph", "osd", "stat", "-f", "json")).get("num_up_osds") != 1:
            if time.monotonic() > deadline:
                pytest.fail(f"the Ceph OSD did not come up in {timeout:.0f} s (logs: {self.root})")
            time.sleep(0.2)
        self.start(timeout)
        self._run(
            "radosgw-admin", "user", "create", "--uid=imgest", "--display-name=imgest",
            f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}",
        )  # fmt: skip

    def start(self, timeout: float = 120.0) -> None:
        """Start the gateway (again, same port) and wait until it listens."""
        if "rgw" not in self.procs:
            self._spawn("rgw", "radosgw", "-f", "-n", "client.rgw")
        wait_for_tcp(self.rgw_port, timeout=timeout)

    def stop(self) -> None:
        """Kill the gateway alone (the cluster behind it keeps its data)."""
        proc = self.procs.pop("rgw", None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def teardown(self) -> None:
        """Kill every daemon, gateway first."""
        for name in ("rgw", "osd", "mon"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def radosgw() -> Iterator[Radosgw]:
    """A running single-node Ceph + radosgw for the whole session (removed at the end)."""
    root = Path(tempfile.mkdtemp(prefix="imgest-ceph-"))
    cluster = Radosgw(root)
    try:
        cluster.setup()
        yield cluster
    finally:
        cluster.teardown()
        shutil.rmtree(root, ignore_errors=True)
