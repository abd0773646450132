"""imgest.bulk and the `imgest upload` / `imgest import` commands."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgest.bulk import find_images, folder_jobs
from tests.services.imgest_server import Server, free_port


def make_tree(root: Path, data_dir: Path) -> None:
    for rel, src in {
        "pets/cats/cat.jpg": "cat.jpg",
        "pets/cat.png": "cat.png",
        "food/coffee.JPG": "coffee.jpg",
        "rocket.jpg": "rocket.jpg",
        "docs/notes.txt": "not-image.txt",
        ".cache/hidden.jpg": "cat-gray.jpg",
        "pets/.hidden.jpg": "cat-gray.jpg",
    }.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((data_dir / src).read_bytes())


def test_find_images_filters_by_extension_and_skips_hidden(tmp_path: Path, data_dir: Path) -> None:
    make_tree(tmp_path, data_dir)
    names = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert names == ["food/coffee.JPG", "pets/cat.png", "pets/cats/cat.jpg", "rocket.jpg"]
    only_png = find_images(tmp_path, ["png"])
    assert [p.name for p in only_png] == ["cat.png"]
    assert [p.name for p in find_images(tmp_path, [".TXT"])] == ["notes.txt"]


def test_folder_jobs_tags_and_labels(tmp_path: Path, data_dir: Path) -> None:
    make_tree(tmp_path, data_dir)
    jobs = folder_jobs(
        tmp_path,
        find_images(tmp_path),
        tags=["batch1", "pets"],
        tags_from_folders=True,
        label_from_folder=True,
    )
    got = {j.path.name: (j.tags, j.label) for j in jobs}
    assert got == {
        "coffee.JPG": (("batch1", "pets", "food"), "food"),
        "cat.png": (("batch1", "pets"), "pets"),
        "cat.jpg": (("batch1", "pets", "cats"), "cats"),
        "rocket.jpg": (("batch1", "pets"), None),
    }
    plain = folder_jobs(tmp_path, find_images(tmp_path))
    assert all(j.tags == () and j.label is None for j in plain)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("bulk-server"))
    srv.start()
    yield srv
    srv.stop()


def imgest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A clean environment (no IMGEST_*), but the same imgest this test imports.
    path = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "imgest.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **path, **(env or {})},
    )


def ground_truth(item: dict[str, Any]) -> str | None:
    """The label sent with `--label-from-folder`: a field today, its own member once the
    server stores ground truth (issue 4); nothing else may land in the fields."""
    fields = dict(item["fields"])
    label = fields.pop("label", None) or item.get("label")
    assert fields == {}, item["fields"]
    return label


def summary_counts(table: str) -> dict[str, int]:
    """The counts from the summary table the CLI prints."""
    rows = re.findall(r"^\s*(created|existing|rejected|failed)\s+(\d+)\s*$", table, re.M)
    return {name: int(n) for name, n in rows}


def test_import_command(server: Server, tmp_path: Path, data_dir: Path) -> None:
    make_tree(tmp_path, data_dir)
    first = imgest(
        "import", str(tmp_path), "--url", server.base, "--tags-from-folders", "--label-from-folder"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary_counts(first.stdout) == {"created": 4, "existing": 0, "rejected": 0, "failed": 0}
    again = imgest("import", str(tmp_path), "--url", server.base, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "created": 0,
        "existing": 4,
        "rejected": 0,
        "failed": 0,
        "skipped": 4,
        "existing_tagged": 0,
        "existing_labelled": 0,
        "label_conflicts": 0,
        "problems": [],
        "conflicts": [],
    }
    items = httpx.get(f"{server.base}/v1/images", params={"tag": "cats"}).json()["items"]
    assert [i["filename"] for i in items] == ["cat.jpg"]
    assert ground_truth(items[0]) == "cats"
    assert sorted(items[0]["tags"]) == ["cats", "pets"]


def test_reimport_with_folder_tags_and_labels_applies_them(
    tmp_path: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = Server(tmp_path_factory.mktemp("reimport-server"))
    srv.start()
    try:
        make_tree(tmp_path, data_dir)
        assert imgest("import", str(tmp_path), "--url", srv.base).returncode == 0
        cat = httpx.get(f"{srv.base}/v1/images", params={"limit": 50}).json()
        png = next(i for i in cat["items"] if i["filename"] == "cat.png")
        # A person labelled one image already: the folder's label must not overwrite it.
        httpx.patch(f"{srv.base}/v1/images/{png['id']}", json={"label": "tabby cat"})
        args = ("import", str(tmp_path), "--url", srv.base, "--tags-from-folders")
        again = imgest(*args, "--label-from-folder", "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        report = json.loads(again.stdout)
        assert report["existing"] == 4 and report["skipped"] == 1  # rocket.jpg: nothing to add
        assert report["existing_tagged"] == 3  # rocket.jpg lies in no folder
        assert report["existing_labelled"] == 2  # cats, food; cat.png's label is kept
        assert report["label_conflicts"] == 1
        assert report["conflicts"] == [{"path": str(tmp_path / "pets/cat.png"), "label": "pets"}]
        items = httpx.get(f"{srv.base}/v1/images", params={"tag": "cats"}).json()["items"]
        assert items[0]["label"] == "cats" and items[0]["tags"] == ["cats", "pets"]
        stored = httpx.get(f"{srv.base}/v1/images/{png['id']}").json()
        assert stored["label"] == "tabby cat" and stored["tags"] == ["pets"]

        # Everything applied: a third run sends no bytes (found by hash with its metadata).
        third = imgest(*args, "--label-from-folder")
        assert third.returncode == 0, third.stdout + third.stderr
        assert re.search(r"of which skipped by hash\s+4", third.stdout), third.stdout
        assert re.search(r"label conflicts \(kept\)\s+1", third.stdout), third.stdout
        assert "pets/cat.png" in third.stdout
    finally:
        srv.stop()


def test_upload_command_reports_rejections(server: Server, tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "fake.jpg"
    bad.write_bytes((data_dir / "not-image.txt").read_bytes())
    done = imgest(
        "upload", str(data_dir / "astronaut.jpg"), str(bad), "--url", server.base, "--tag", "x"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fake.jpg" in done.stdout and "unsupported_media_type" in done.stdout
    assert summary_counts(done.stdout) == {
        "created": 1,
        "existing": 0,
        "rejected": 1,
        "failed": 0,
    }


def test_upload_prints_each_files_id_status_and_top1(
    server: Server, tmp_path: Path, data_dir: Path
) -> None:
    photo = data_dir / "coffee.jpg"
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    # No --url: the server is found through IMGEST_PORT.
    first = imgest("upload", str(photo), env={"IMGEST_PORT": str(server.port)})
    assert first.returncode == 0, first.stdout + first.stderr
    line = next(x for x in first.stdout.splitlines() if digest in x)
    top1 = r".+ 0\.\d{3} \(efficientnet-lite0@default\)"
    assert re.fullmatch(rf"(created|existing)\s+{digest}\s+coffee\.jpg\s+{top1}", line), line
    # Again: skipped by hash, and still its prediction (read back), and the full answer.
    again = imgest("upload", str(photo), "--url", server.base, "--json")
    assert again.returncode == 0, again.stderr
    body = json.loads(again.stdout)
    (file,) = body["files"]
    assert (file["status"], file["id"], file["sent"]) == ("existing", digest, False)
    assert file["answer"]["id"] == digest and file["answer"]["predictions"]
    best = file["answer"]["predictions"][0]["top"][0]
    assert file["top"] == {
        "label": best["label"],
        "score": best["score"],
        "model": "efficientnet-lite0",
        "pipeline": "default",
    }
    assert f"{best['label']} {best['score']:.3f}" in line


@pytest.mark.parametrize("command", ["upload", "import"])
def test_a_stopped_server_stops_the_run_in_seconds_naming_the_url(
    command: str, tmp_path: Path, data_dir: Path
) -> None:
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes((data_dir / "cat.jpg").read_bytes())
    target = (
        [str(p) for p in sorted(tmp_path.glob("*.jpg"))] if command == "upload" else [str(tmp_path)]
    )
    port = free_port()
    started = time.monotonic()
    failed = imgest(command, *target, env={"IMGEST_PORT": str(port)})
    elapsed = time.monotonic() - started
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert f"imgest: cannot reach imgest at http://127.0.0.1:{port} (connection refused)\n" in (
        failed.stderr
    )
    assert "Traceback" not in failed.stderr and failed.stdout == ""
    assert elapsed < 12, elapsed  # about 5 s of retries (plus start-up), not 64 s
