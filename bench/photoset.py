"""The fidelity benchmark's real photos: fetched from PyPI and Debian packages into .cache/photos.

Nothing is downloaded at test or bench time once the cache is filled; filling it uses the
ordinary clients (`pip download`, `apt-get download`) for pinned package versions:

- foolbox 3.3.4 (PyPI, MIT): foolbox/data/imagenet_NN_LABEL.jpg, 20 ImageNet photos (512 px
  squares), labelled by their file names
- scikit-image 0.26.0 (PyPI, BSD-3-Clause; each photo's source in skimage/data/README.txt):
  5 photos, 3 labelled
- opencv-doc 4.6.0+dfsg-12 (Debian 12, Apache-2.0/BSD): 19 photos of examples/data, 5 labelled
- mate-backgrounds 1.26.0-1 (Debian 12, GPL-2+/CC-BY-SA per its copyright file): 13 photos
  (nature/ and the elephants), 2 labelled

Labels are ImageNet-1k class indices; a photo whose subject several classes fit (a tabby is
also a "tiger cat") lists all of them, and a prediction is right if it is any of them. The Debian
packages need `apt-get` (any Debian or Ubuntu); without it only the PyPI photos are used.

Usage: python bench/photoset.py  (fills the cache and prints the manifest).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "photos"

WHEELS = {"foolbox": "3.3.4", "scikit-image": "0.26.0"}
DEBS = {"opencv-doc": "4.6.0+dfsg-12", "mate-backgrounds": "1.26.0-1"}

SKIMAGE = {  # member -> labels
    "chelsea.png": (281, 282, 285),
    "coffee.png": (967, 968, 504),
    "rocket.jpg": (657, 744),
    "astronaut.png": (),
    "motorcycle_left.png": (),
}
OPENCV = {
    "apple.jpg": (948,),
    "orange.jpg": (950,),
    "squirrel_cls.jpg": (335,),
    "butterfly.jpg": (321, 322, 323, 324, 325, 326),
    "messi5.jpg": (805,),
    **dict.fromkeys(
        [
            "baboon.jpg",
            "fruits.jpg",
            "home.jpg",
            "building.jpg",
            "aero1.jpg",
            "aero3.jpg",
            "board.jpg",
            "leuvenA.jpg",
            "starry_night.jpg",
            "smarties.png",
            "stuff.jpg",
            "rubberwhale1.png",
            "basketball1.png",
            "licenseplate_motion.jpg",
        ],
        (),
    ),
}
MATE_UNLABELLED = (
    "Aqua Blinds Dune FreshFlower Garden GreenMeadow RainDrops Storm TwoWings Wood YellowFlower"
)
MATE = {
    "nature/LadyBird.jpg": (301,),
    "abstract/Elephants.jpg": (385, 386, 101),
    **{f"nature/{name}.jpg": () for name in MATE_UNLABELLED.split()},
}


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


def photos(*, fetch: bool = True) -> list[Photo]:
    """The photo set, filling the cache first when `fetch` (and it is not filled yet)."""
    manifest = CACHE / "manifest.json"
    if fetch and not manifest.exists():
        build()
    if not manifest.exists():
        raise SystemExit(f"no photo set at {CACHE}: run python bench/photoset.py")
    rows = json.loads(manifest.read_text())
    return [Photo(CACHE / r["file"], r["source"], tuple(r["labels"])) for r in rows]


def build() -> None:
    """Download the packages (pinned), extract the photos, write manifest.json."""
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for package, version in WHEELS.items():
        wheel = _wheel(package, version, downloads)
        source = f"{package} {version}"
        with zipfile.ZipFile(wheel) as zf:
            for member in sorted(zf.namelist()):
                labels: tuple[int, ...] | None = None
                if package == "foolbox":
                    found = re.fullmatch(r"foolbox/data/imagenet_\d\d_(\d+)\.jpg", member)
                    labels = (int(found[1]),) if found else None
                elif member.startswith("skimage/data/"):
                    labels = SKIMAGE.get(member.removeprefix("skimage/data/"))
                if labels is not None:
                    rows.append(_save(zf.read(member), member, source, labels))
    if shutil.which("apt-get"):
        for package, version in DEBS.items():
            deb = _deb(package, version, downloads)
            if deb is None:
                continue
            wanted = OPENCV if package == "opencv-doc" else MATE
            prefix = (
                "./usr/share/doc/opencv-doc/examples/data/"
                if package == "opencv-doc"
                else "./usr/share/backgrounds/mate/"
            )
            source = f"{package} {deb.name.split('_')[1]}"
            for member, data in _deb_members(deb, prefix, set(wanted)):
                rows.append(_save(data, member, source, wanted[member]))
    else:
        print("apt-get not found: the Debian photos are left out", file=sys.stderr)
    (CACHE / "manifest.json").write_text(json.dumps(rows, indent=1))


def _save(data: bytes, member: str, source: str, labels: tuple[int, ...]) -> dict[str, object]:
    name = source.split()[0] + "__" + member.replace("/", "_")
    (CACHE / "files").mkdir(parents=True, exist_ok=True)
    (CACHE / "files" / name).write_bytes(data)
    return {"file": f"files/{name}", "source": source, "labels": list(labels)}


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
    return out


if __name__ == "__main__":
    for photo in photos():
        print(f"{photo.name}\t{photo.source}\t{list(photo.labels)}")
