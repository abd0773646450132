"""TOML pipelines, tiling, the new steps and steps registered by entry point."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgest.config import load_settings
from imgest.errors import ConfigError
from imgest.imaging import registry as step_registry
from imgest.imaging.pipeline import Pipeline, builtin_pipelines
from imgest.imaging.pipelines import load_pipelines, parse_pipelines
from imgest.imaging.sniff import probe
from imgest.imaging.steps import blur, center_crop, equalize, sharpen, split

TILES = """
[pipelines.tiles2x2]
steps = [
  { step = "orient" },
  { step = "to_rgb" },
  { step = "resize", size = [448, 448], mode = "crop" },
  { step = "tile", rows = 2, cols = 2, aggregate = "max" },
]

[pipelines.grey-sharp]
quality = 85
steps = [
  { step = "resize", size = [256, 256], mode = "stretch", filter = "lanczos" },
  { step = "center_crop", size = [224, 224] },
  { step = "grayscale" },
  { step = "autocontrast", cutoff = 1 },
  { step = "sharpen" },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    return path


def test_toml_pipelines_join_the_builtins(tmp_path: Path) -> None:
    pipelines = load_pipelines(write(tmp_path, TILES))
    assert set(pipelines) == {"default", "stretch", "pad", "tiles2x2", "grey-sharp"}
    tiles = pipelines["tiles2x2"]
    assert [name for name, _ in tiles.steps] == ["resize", "tile"]  # orient/to_rgb implicit
    assert tiles.size == (448, 448) and tiles.grid == (2, 2) and tiles.aggregate == "max"
    assert tiles.input_size == (224, 224)
    grey = pipelines["grey-sharp"]
    assert grey.size == (224, 224) and grey.grid == (1, 1) and grey.quality == 85
    assert dict(dict(grey.steps)["autocontrast"])["cutoff"] == 1.0


def test_settings_name_the_file(tmp_path: Path) -> None:
    settings = load_settings(pipelines_file=write(tmp_path, TILES), background=(0, 0, 0))
    pipelines = load_pipelines(settings, size=(224, 224))
    assert pipelines["tiles2x2"].background == (0, 0, 0)
    assert pipelines["default"].background == (0, 0, 0)


def test_tile_2x2_renders_four_model_inputs(tmp_path: Path, read: Callable[[str], bytes]) -> None:
    tiles = load_pipelines(write(tmp_path, TILES))["tiles2x2"]
    data = read("cat.jpg")
    rendition = tiles.render(data, probe(data))
    assert rendition.image.size == (448, 448)  # stored whole: the picture the tiles come from
    inputs = rendition.model_inputs()
    assert len(inputs) == 4 and all(x.shape == (224, 224, 3) for x in inputs)
    whole = rendition.pixels()
    assert np.array_equal(inputs[1], whole[:224, 224:])  # row by row: top-right second
    assert np.array_equal(inputs[2], whole[224:, :224])
    untiled = builtin_pipelines()["default"].render(data, probe(data))
    assert len(untiled.model_inputs()) == 1


def test_split_row_by_row() -> None:
    img = Image.fromarray(np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3))
    parts = split(img, 2, 3)
    assert [p.size for p in parts] == [(2, 2)] * 6
    assert np.array_equal(np.asarray(parts[5]), np.asarray(img)[2:, 4:])
    with pytest.raises(ValueError):
        split(img, 3, 3)


def tiled(**tile: Any) -> Pipeline:
    return Pipeline.build(
        "t", [("resize", {"size": (448, 448)}), ("tile", {"rows": 2, "cols": 2, **tile})]
    )


def test_version_is_stable_and_changes_with_any_tile_parameter(tmp_path: Path) -> None:
    a = load_pipelines(write(tmp_path, TILES))["tiles2x2"]
    b = load_pipelines(write(tmp_path, TILES))["tiles2x2"]
    assert a.version == b.version and a == b
    # The same spec spelled differently in Python: same version.
    assert tiled(aggregate="max").version == a.version
    versions = {
        tiled().version,
        tiled(aggregate="max").version,
        tiled(rows=1).version,
        tiled(cols=1).version,
        Pipeline.build("t", [("resize", {"size": (448, 448)})]).version,
    }
    assert len(versions) == 5


@pytest.mark.parametrize(
    ("step", "change"),
    [
        ("blur", {"radius": 2.0}),
        ("sharpen", {"percent": 100}),
        ("sharpen", {"threshold": 0}),
        ("autocontrast", {"cutoff": 2.0}),
        ("center_crop", {"size": [200, 224]}),
    ],
)
def test_any_step_parameter_changes_the_version(step: str, change: dict[str, Any]) -> None:
    base_params = {"center_crop": {"size": [224, 224]}}.get(step, {})

    def build(params: dict[str, Any]) -> Pipeline:
        return Pipeline.build("p", [("resize", {"size": (224, 224)}), (step, params)])

    assert build(base_params).version != build({**base_params, **change}).version
    assert build(base_params).version == build(dict(base_params)).version


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[pipelines.p]\nsteps = [{ step = "sepia" }]', "pipeline 'p': steps\\[1\\] \\(sepia\\)"),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [224, 224], zoom = 2 }]',
            "steps\\[1\\] \\(resize\\).*zoom",
        ),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [224, 224] },'
            ' { step = "blur", radius = "big" }]',
            "steps\\[2\\] \\(blur\\).*radius",
        ),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [224, 224] },'
            ' { step = "tile", rows = 0 }]',
            "steps\\[2\\] \\(tile\\).*rows",
        ),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [225, 224] },'
            ' { step = "tile", rows = 2, cols = 2 }]',
            "pipeline 'p'.*split",
        ),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [224, 224] },'
            ' { step = "tile" }, { step = "grayscale" }]',
            "pipeline 'p'.*tile must be the last",
        ),
        ('[pipelines.p]\nsteps = [{ step = "grayscale" }]', "pipeline 'p'.*one resize"),
        ("[pipelines.p]\nsteps = []", "pipeline 'p'.*steps"),
        ('[pipelines.p]\ncolour = 1\nsteps = [{ step = "grayscale" }]', "'p'.*colour"),
        ('[pipelines.default]\nsteps = [{ step = "resize", size = [9, 9] }]', "built in"),
        ('[pipelines."Bad Name"]\nsteps = []', "'Bad Name'"),
        ("[pipelines.p\n", "not valid TOML"),
        ('[pipelines.p]\nsteps = [{ step = "orient", flip = true }]', "orient.*no parameters"),
        (
            '[pipelines.p]\nsteps = [{ step = "resize", size = [224, 224] },'
            ' { step = "center_crop", size = [300, 300] }]',
            "center_crop.*larger",
        ),
    ],
)
def test_bad_pipelines_are_config_errors_naming_pipeline_and_key(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_pipelines(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        parse_pipelines(tmp_path / "nope.toml")


def test_new_steps_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(100, 140, (64, 64, 3), dtype=np.uint8))
    assert np.asarray(blur(noisy, radius=2.0)).std() < np.asarray(noisy).std() / 2
    assert blur(noisy, radius=0.0) is noisy
    assert np.asarray(sharpen(noisy)).std() > np.asarray(noisy).std()
    flat = np.asarray(equalize(noisy))
    assert flat.min() < 20 and flat.max() > 235  # a narrow histogram spread to the full range
    box = center_crop(noisy, size=(20, 10))
    assert box.size == (20, 10)
    assert np.array_equal(np.asarray(box), np.asarray(noisy)[27:37, 22:42])


@pytest.fixture
def plugin_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A third party's `invert` step, registered the way pyproject entry points are."""
    real = importlib.metadata.entry_points(group=step_registry.ENTRY_POINT_GROUP)
    extra = importlib.metadata.EntryPoint(
        name="invert", value="PIL.ImageOps:invert", group=step_registry.ENTRY_POINT_GROUP
    )

    def entry_points(*, group: str) -> importlib.metadata.EntryPoints:
        assert group == step_registry.ENTRY_POINT_GROUP
        return importlib.metadata.EntryPoints([*real, extra])

    monkeypatch.setattr(step_registry, "entry_points", entry_points)
    step_registry.registered_steps.cache_clear()
    yield
    step_registry.registered_steps.cache_clear()


@pytest.mark.usefixtures("plugin_step")
def test_third_party_steps_register_by_entry_point(
    tmp_path: Path, read: Callable[[str], bytes]
) -> None:
    path = write(
        tmp_path,
        '[pipelines.negative]\nsteps = [{ step = "resize", size = [224, 224] },'
        ' { step = "invert" }]',
    )
    negative = load_pipelines(path)["negative"]
    data = read("cat.jpg")
    plain = builtin_pipelines()["default"].render(data, probe(data)).pixels().astype(int)
    inverted = negative.render(data, probe(data)).pixels().astype(int)
    assert np.abs(inverted - (255 - plain)).max() <= 1
    assert negative.version != builtin_pipelines()["default"].version


def test_builtin_steps_come_from_entry_points() -> None:
    steps = step_registry.registered_steps()
    assert {"resize", "center_crop", "tile", "blur", "sharpen", "equalize"} <= set(steps)
    with pytest.raises(ValueError, match="unknown pipeline step 'invert'"):
        step_registry.get_step("invert")
