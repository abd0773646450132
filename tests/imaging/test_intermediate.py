"""The intermediate's geometry and spec: its size, when it serves a pipeline, its version, the
setting that turns it on and the pipeline name it reserves."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imgest.config import load_settings
from imgest.errors import ConfigError
from imgest.imaging.intermediate import Intermediate
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline, builtin_pipelines
from imgest.imaging.pipelines import load_pipelines
from imgest.rendering import reduce, render
from imgest.runtime import Runtime

DEFAULT = builtin_pipelines()["default"]


def test_size_keeps_the_aspect_and_small_originals_get_none() -> None:
    spec = Intermediate(long_side=768)
    assert spec.size_for(4032, 3024) == (768, 576)
    assert spec.size_for(3000, 4000) == (576, 768)
    assert spec.size_for(768, 500) is None  # not larger than the intermediate: none
    assert spec.size_for(769, 500) == (768, 499)


def test_version_changes_with_what_makes_the_bytes() -> None:
    versions = {
        Intermediate().version,
        Intermediate(long_side=512).version,
        Intermediate(quality=95).version,
        Intermediate(background=(0, 0, 0)).version,
    }
    assert len(versions) == 4
    assert (
        Intermediate()
        .path("ab" * 32)
        .startswith(f"renditions/intermediate@{Intermediate().version}/ab/ab/")
    )


def test_serves_a_pipeline_only_when_it_holds_the_pixels_the_resize_needs() -> None:
    spec = Intermediate(long_side=768)
    big = Pipeline.build("big", [("resize", {"size": [512, 512], "mode": "crop"})])
    # 224 crop of a 4032 x 3024 photo needs 342 x 256: a 768 x 576 intermediate has them.
    assert spec.source_for(DEFAULT, (4032, 3024), (768, 576)) == "intermediate"
    # A 512 px centre crop needs 780 x 585: it does not.
    assert spec.source_for(big, (4032, 3024), (768, 576)) == "original"
    # EXIF-rotated: catalogued 4032 x 3024, upright (and the intermediate) portrait.
    assert spec.source_for(DEFAULT, (4032, 3024), (576, 768)) == "intermediate"
    assert spec.source_for(DEFAULT, (4032, 3024), None) == "original"
    other = Pipeline.build(
        "black", [("resize", {"size": [224, 224], "mode": "crop"})], background=(0, 0, 0)
    )
    assert spec.source_for(other, (4032, 3024), (768, 576)) == "original"  # other background


def jpeg(size: tuple[int, int]) -> bytes:
    img = Image.radial_gradient("L").convert("RGB").resize(size)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def test_ingest_makes_it_from_the_same_decode_and_backfill_makes_the_same_size() -> None:
    spec = Intermediate(long_side=512)
    data = jpeg((2000, 1500))
    rendered = render(data, DEFAULT, ImageLimits(), intermediate=spec)
    assert rendered.intermediate is not None
    assert (rendered.intermediate.width, rendered.intermediate.height) == (512, 384)
    alone = reduce(data, spec, ImageLimits())
    assert alone is not None and (alone.width, alone.height) == (512, 384)
    with Image.open(io.BytesIO(alone.encoded)) as im:
        assert im.size == (512, 384) and im.format == "JPEG"
    assert render(jpeg((400, 300)), DEFAULT, ImageLimits(), intermediate=spec).intermediate is None
    assert reduce(jpeg((400, 300)), spec, ImageLimits()) is None


@pytest.mark.parametrize(("raw", "want"), [("off", 0), ("OFF", 0), ("0", 0), ("768", 768)])
def test_setting(raw: str, want: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_INTERMEDIATE", raw)
    settings = load_settings()
    assert settings.intermediate == want
    spec = Runtime(settings).intermediate
    assert (spec.long_side if spec else 0) == want


def test_setting_refuses_tiny_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_INTERMEDIATE", "32")
    with pytest.raises(ConfigError, match="IMGEST_INTERMEDIATE"):
        load_settings()


def test_pipeline_name_intermediate_is_reserved(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[pipelines.intermediate]\nsteps = [{ step = "resize", size = [224, 224] }]\n')
    with pytest.raises(ConfigError, match="reserved"):
        load_pipelines(path)
