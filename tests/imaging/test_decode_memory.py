"""Decode cost bounds (issue 14 items 3 and 4): time and peak RSS measured in a subprocess.

Each case decodes one file through `imgest.rendering.render` (probe, limits, decode, default
pipeline) in a fresh interpreter, resetting the kernel's peak-RSS mark (`/proc/self/clear_refs`)
just before, so the growth it reports is this decode's alone, whatever else the machine runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgest.imaging.limits import MiB, decode_bytes
from imgest.imaging.sniff import probe
from tests.hostile import make_corpus

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc peak-RSS reset"
)

_MEASURE = r"""
import json, sys, time
from imgest.errors import ImgestError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import builtin_pipelines
from imgest.rendering import render

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

data = open(sys.argv[1], "rb").read()
limits = ImageLimits(**json.loads(sys.argv[2]))
pipeline = builtin_pipelines()[sys.argv[3]]
render(open(sys.argv[4], "rb").read(), pipeline, limits)  # warm up: imports, lcms, simplejpeg
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
started = time.monotonic()
try:
    render(data, pipeline, limits)
    code = None
except ImgestError as exc:
    code = exc.code
print(json.dumps({"code": code, "seconds": time.monotonic() - started,
                  "growth": status("VmHWM") - before}))
"""


def measure(
    path: Path, warm: Path, *, pipeline: str = "default", **limits: int
) -> dict[str, float]:
    """{"code", "seconds", "growth" (bytes)} of rendering `path` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), json.dumps(limits), pipeline, str(warm)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("decode-cost")
    names = {
        "float": "tiff-float32-49mp.tiff",
        "grey16": "png-16bit-grey-49mp.png",
        "scans": "bomb-jpeg-3000-scans.jpg",
    }
    paths = {}
    for key, name in names.items():
        paths[key] = out / name
        paths[key].write_bytes(make_corpus.MAKERS[name]())
    paths["warm"] = out / "warm.jpg"
    paths["warm"].write_bytes((make_corpus.DATA / "cat.jpg").read_bytes())
    return paths


def test_float_tiff_decodes_within_its_estimate(files: dict[str, Path]) -> None:
    """A 310 KB 7000 x 7000 float TIFF took +796 MiB (numpy temporaries); now ~250 MiB."""
    got = measure(files["float"], files["warm"])
    assert got["code"] is None
    estimate = decode_bytes(probe(files["float"].read_bytes()), (224, 224))
    assert estimate == 7000 * 7000 * 5
    assert got["growth"] < estimate + 32 * MiB, got  # measured 250 MiB, estimate 234 MiB
    assert got["growth"] < 320 * MiB


def test_16bit_png_decodes_within_its_estimate(files: dict[str, Path]) -> None:
    """A 110 KB 7000 x 7000 16-bit grey PNG took +561 MiB; now ~150 MiB."""
    got = measure(files["grey16"], files["warm"])
    assert got["code"] is None
    estimate = decode_bytes(probe(files["grey16"].read_bytes()), (224, 224))
    assert got["growth"] < estimate + 32 * MiB, got  # measured 148 MiB, estimate 140 MiB
    assert got["growth"] < 200 * MiB


def test_over_the_memory_budget_is_refused_before_decoding(files: dict[str, Path]) -> None:
    got = measure(files["float"], files["warm"], max_decode_bytes=128 * MiB)
    assert got["code"] == "image_too_much_memory"
    assert got["growth"] < 16 * MiB, got  # the 196 MB of samples were never allocated
    assert got["seconds"] < 1.0


def test_scan_bomb_is_refused_before_decoding(files: dict[str, Path]) -> None:
    """73 KB, 3000 scans: 17-20 s of libjpeg before the scan limit; now refused at once."""
    got = measure(files["scans"], files["warm"])
    assert got["code"] == "image_too_complex"
    assert got["seconds"] < 1.0, got
    assert got["growth"] < 16 * MiB, got
