"""Tests for imgest.imaging.pipeline: versioning, min decode size, rendering and renditions."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgest.errors import ImageTooManyPixels, ImgestError
from imgest.imaging import decode as decode_module
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.pipeline import Pipeline, Rendition, builtin_pipelines
from imgest.imaging.sniff import probe
from imgest.scoring.model import Model

Diff = Callable[[Image.Image, Image.Image], float]


def resize_pipeline(name: str = "p", **params: Any) -> Pipeline:
    return Pipeline.build(name, [("resize", {"size": (224, 224), **params})])


def service_flow(data: bytes, pipeline: Pipeline, limits: ImageLimits | None = None) -> Rendition:
    info = probe(data)
    check(info, limits or ImageLimits())
    return pipeline.render(data, info)


def test_builtin_pipelines() -> None:
    pipelines = builtin_pipelines()
    assert set(pipelines) == {"default", "stretch", "pad"}
    for name, pipeline in pipelines.items():
        assert pipeline.name == name
        assert pipeline.size == (224, 224)
        assert pipeline.output == "jpeg" and pipeline.quality == 90
    assert len({p.version for p in pipelines.values()}) == 3
    assert dict(pipelines["default"].steps[0][1])["mode"] == "crop"
    assert dict(pipelines["default"].steps[0][1])["crop"] == 0.875


def test_builtin_pipelines_take_size_crop_background() -> None:
    pipeline = builtin_pipelines(size=(320, 240), crop=0.9, background=(0, 0, 0))["default"]
    assert pipeline.size == (320, 240)
    assert pipeline.background == (0, 0, 0)
    assert dict(pipeline.steps[0][1])["crop"] == 0.9


def test_spec_is_canonical_json() -> None:
    spec = builtin_pipelines()["default"].spec
    assert json.loads(json.dumps(spec)) == spec
    assert spec["steps"][0]["step"] == "resize"
    assert spec["output"] == {"format": "jpeg", "quality": 90, "subsampling": "4:4:4"}


def test_version_is_stable() -> None:
    a, b = builtin_pipelines()["default"], builtin_pipelines()["default"]
    assert a.version == b.version
    assert len(a.version) == 12 and int(a.version, 16) >= 0
    assert a == b and hash(a) == hash(b)
    # Defaults spelled out, reordered, as lists or with 1 for 1.0: the same pipeline.
    spelled = Pipeline.build(
        "default",
        [
            (
                "resize",
                {
                    "filter": "bicubic",
                    "background": [255, 255, 255],
                    "size": [224, 224],
                    "mode": "crop",
                    "crop": 0.875,
                },
            ),
        ],
    )
    assert spelled.version == a.version and spelled == a
    assert resize_pipeline(crop=1).version == resize_pipeline(crop=1.0).version


# Renditions are stored under (pipeline name, version): a change to what the built-ins render
# must change these, deliberately. History: default 6b6301f3e46c (bilinear, revision 1).
BUILTIN_VERSIONS = {"default": "0d7816f13fdd", "stretch": "b9e1a9d997d7", "pad": "d106b7587884"}


def test_builtin_versions_are_pinned() -> None:
    assert {k: p.version for k, p in builtin_pipelines().items()} == BUILTIN_VERSIONS


def test_builtins_resample_like_the_reference_recipe() -> None:
    # Bicubic, as the model's reference preprocessing (issue 17: bilinear was the main cause
    # of served top-1 differing from the reference's).
    for pipeline in (*builtin_pipelines().values(), resize_pipeline()):
        assert dict(pipeline.steps[0][1])["filter"] == "bicubic"
    bilinear = builtin_pipelines(filter="bilinear")["default"]
    assert bilinear.version != builtin_pipelines()["default"].version
    assert bilinear.version != BUILTIN_VERSIONS["default"]


def test_name_does_not_change_the_version() -> None:
    assert resize_pipeline("a").version == resize_pipeline("b").version


@pytest.mark.parametrize(
    "change",
    [
        {"crop": 0.9},
        {"filter": "lanczos"},
        {"mode": "pad"},
        {"size": (225, 224)},
        {"background": (0, 0, 0)},
    ],
)
def test_version_changes_with_any_parameter(change: dict[str, Any]) -> None:
    assert resize_pipeline(**change).version != resize_pipeline().version


def test_version_changes_with_output_background_and_steps() -> None:
    base = resize_pipeline()
    steps = base.steps
    grey = ("grayscale", ())
    assert Pipeline("p", steps, quality=85).version != base.version
    assert Pipeline("p", steps, background=(0, 0, 0)).version != base.version
    with_grey = Pipeline("p", (*steps, grey))
    assert with_grey.version != base.version
    assert Pipeline("p", (grey, *steps)).version != with_grey.version


@pytest.mark.parametrize(
    "steps",
    [
        (),
        (("grayscale", {}),),
        (("resize", {"size": (224, 224)}), ("resize", {"size": (112, 112)})),
        (("blur", {}),),
        (("resize", {}),),
        (("resize", {"size": (224, 224), "colour": "red"}),),
        (("resize", {"size": (224, 224), "mode": "zoom"}),),
    ],
)
def test_invalid_pipelines_fail_at_construction(steps: Any) -> None:
    with pytest.raises(ValueError):
        Pipeline.build("bad", steps)


def test_min_decode_size() -> None:
    pipelines = builtin_pipelines()
    assert pipelines["default"].min_decode_size(4000, 3000) == (342, 256)
    assert pipelines["default"].min_decode_size(3000, 4000) == (256, 342)
    assert pipelines["stretch"].min_decode_size(4000, 3000) == (299, 224)
    assert pipelines["pad"].min_decode_size(4000, 3000) == (224, 168)


def test_render_the_cat(read: Callable[[str], bytes]) -> None:
    rendition = service_flow(read("cat.jpg"), builtin_pipelines()["default"])
    assert rendition.image.mode == "RGB"
    assert (rendition.width, rendition.height) == (224, 224)
    pixels = rendition.pixels()
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    pixels[0, 0] = 0  # a copy: writable, and the rendition is unchanged
    assert rendition.content_type == "image/jpeg" and rendition.extension == "jpg"
    encoded = rendition.encode()
    assert encoded[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(encoded)) as im:
        assert im.size == (224, 224) and im.mode == "RGB"
        assert np.abs(np.asarray(im, dtype=int) - rendition.pixels()).mean() < 3


def test_render_matches_a_full_size_reference(
    read: Callable[[str], bytes], cat: Image.Image, diff: Diff
) -> None:
    # Reference: full decode, exact centre crop of 0.875 of the short side, Lanczos.
    side = 0.875 * 300
    box = ((451 - side) / 2, (300 - side) / 2, (451 + side) / 2, (300 + side) / 2)
    reference = cat.resize((224, 224), Image.Resampling.LANCZOS, box=box)
    rendition = service_flow(read("cat.jpg"), builtin_pipelines()["default"])
    assert diff(rendition.image, reference) < 2.5


@pytest.mark.parametrize("k", range(1, 9))
def test_every_exif_orientation_renders_the_same(
    k: int, oriented_jpeg: Callable[..., bytes], diff: Diff
) -> None:
    pipeline = builtin_pipelines()["default"]
    upright = service_flow(oriented_jpeg(1), pipeline)
    assert diff(service_flow(oriented_jpeg(k), pipeline).image, upright.image) < 3.0


@pytest.mark.parametrize("name", ["default", "stretch", "pad"])
@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (2, 3), (4000, 30)])
def test_extreme_aspect_ratios_render_exactly_224(
    name: str, shape: tuple[int, int], encode: Any
) -> None:
    data = encode(Image.new("RGB", shape, (10, 200, 30)), "PNG")
    rendition = service_flow(data, builtin_pipelines()[name])
    assert rendition.image.size == (224, 224)


def test_long_strip_is_a_clean_refusal_or_a_clean_rendition(encode: Any) -> None:
    data = encode(Image.new("L", (1, 100_000), 128), "PNG")
    with pytest.raises(ImageTooManyPixels):
        service_flow(data, builtin_pipelines()["default"])
    wide = service_flow(data, builtin_pipelines()["default"], ImageLimits(max_side=100_000))
    assert wide.image.size == (224, 224)


def test_big_jpeg_is_decoded_small(
    big_jpeg: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[tuple[int, int]] = []
    real = decode_module.decode_exact

    def spy(*args: Any, **kwargs: Any) -> decode_module.Decoded:
        decoded = real(*args, **kwargs)
        sizes.append(decoded.image.size)
        return decoded

    monkeypatch.setattr("imgest.imaging.pipeline.decode_exact", spy)
    rendition = service_flow(big_jpeg(4000, 3000), builtin_pipelines()["default"])
    assert rendition.image.size == (224, 224)
    (decoded,) = sizes
    assert decoded == (500, 375)  # the 1/8 DCT scale, still >= (342, 256)


def test_background_fills_transparency(read: Callable[[str], bytes]) -> None:
    data = read("cat-rgba.png")
    pipeline = builtin_pipelines(background=(0, 0, 255))["stretch"]
    corner = service_flow(data, pipeline).image.getpixel((0, 0))
    assert corner == (0, 0, 255)
    red = builtin_pipelines(background=(255, 0, 0))["stretch"]
    assert service_flow(data, red).image.getpixel((0, 0)) == (255, 0, 0)
    assert red.version != pipeline.version


@pytest.mark.parametrize(
    "name",
    [
        "cat.jpg",
        "cat-progressive.jpg",
        "cat-gray.jpg",
        "cat-cmyk.jpg",
        "cat-prophoto.jpg",
        "rocket.jpg",
        "coffee.jpg",
        "astronaut.jpg",
        "cat.png",
        "cat-rgba.png",
        "cat-palette.png",
        "cat-gray16.png",
        "cat-la.png",
        "cat.webp",
        "cat-animated.gif",
        "cat.tiff",
        "cat.bmp",
        "cat.heic",
        "cat-rotated.heic",
        "cat-alpha.heic",
        "cat-grid.heic",
        "cat.avif",
        "cat-rotated.avif",
    ],
)
def test_every_sample_renders(name: str, read: Callable[[str], bytes]) -> None:
    for pipeline in builtin_pipelines().values():
        rendition = service_flow(read(name), pipeline)
        assert rendition.image.size == (224, 224) and rendition.image.mode == "RGB"


@pytest.mark.parametrize(
    "name",
    [
        "bomb.png",
        "cat-truncated.jpg",
        "cat-truncated.png",
        "not-image.txt",
        "svg-named.jpg",
        "pdf-named.png",
        "cat-truncated.heic",
        "cat-huge.heic",
        "mp4-named.heic",
    ],
)
def test_bad_samples_fail_with_imgest_errors(name: str, read: Callable[[str], bytes]) -> None:
    with pytest.raises(ImgestError) as caught:
        service_flow(read(name), builtin_pipelines()["default"])
    assert 400 <= caught.value.status < 500


@pytest.mark.parametrize(
    "name", ["cat.heic", "cat-rotated.heic", "cat-grid.heic", "cat.avif", "cat-rotated.avif"]
)
def test_heif_renders_upright_like_the_png(
    name: str, read: Callable[[str], bytes], diff: Diff
) -> None:
    pipeline = builtin_pipelines()["default"]
    reference = service_flow(read("cat.png" if "grid" not in name else "cat.jpg"), pipeline)
    rendition = service_flow(read(name), pipeline)
    assert rendition.image.size == (224, 224)
    assert diff(rendition.image, reference.image) < 4.0


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.bundled(threads=1)


@pytest.mark.parametrize("name", ["cat.heic", "cat.avif", "cat-rotated.heic"])
def test_heif_top1_is_a_cat(name: str, read: Callable[[str], bytes], model: Model) -> None:
    pixels = service_flow(read(name), builtin_pipelines()["default"]).pixels()
    top = model.top_k(model.predict(model.preprocess(pixels)[None])[0], 5)
    assert top[0].index in range(281, 286), top  # ImageNet's five cat classes


# --- issue 17: junk between JPEG segments, XMP orientation, lossless orientations -------------


def test_jpeg_with_junk_between_segments_renders_as_the_clean_file(
    oriented_jpeg: Callable[..., bytes],
) -> None:
    from tests.imaging.test_sniff import with_junk

    clean = oriented_jpeg(6)
    junk = with_junk(
        with_junk(clean, b"\x00\x0d\x0a", before=b"\xff\xdb"), b"x", before=b"\xff\xda"
    )
    pipeline = builtin_pipelines()["default"]
    want = service_flow(clean, pipeline).model_inputs()[0]
    assert np.array_equal(service_flow(junk, pipeline).model_inputs()[0], want)


# Odd and even margins around the centre crop; the last ones are box-reduced by 2, 3 and 5 in
# decode, with a partial block that must land on the upright picture's right and bottom.
LOSSLESS_SIZES = [(225, 150), (451, 300), (300, 451), (513, 301), (260, 259), (1001, 777)]
LOSSLESS_SIZES += [(803, 1285), (1603, 1279)]


@pytest.mark.parametrize("size", LOSSLESS_SIZES)
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_every_orientation_gives_a_bit_identical_model_input_for_lossless_images(
    size: tuple[int, int], fmt: str, cat: Image.Image, encode: Any
) -> None:
    from tests.conftest import STORED_FOR_ORIENTATION

    upright = cat.resize(size, Image.Resampling.LANCZOS)
    pipeline = builtin_pipelines()["default"]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    want = service_flow(encode(upright, fmt, **extra), pipeline).model_inputs()[0]
    for k in range(2, 9):
        tags = Image.Exif()
        tags[0x0112] = k
        # TIFF: the tag in the image's own directory (exif= there rewrites its size tags).
        tagged = {"tiffinfo": {274: k}} if fmt == "TIFF" else {"exif": tags.tobytes()}
        data = encode(STORED_FOR_ORIENTATION[k](upright), fmt, **tagged, **extra)
        assert probe(data).orientation == k
        assert np.array_equal(service_flow(data, pipeline).model_inputs()[0], want), k


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_orientation_only_in_xmp_gives_the_upright_model_input(
    fmt: str, cat: Image.Image, encode: Any
) -> None:
    from tests.conftest import STORED_FOR_ORIENTATION
    from tests.imaging.test_sniff import xmp_oriented

    pipeline = builtin_pipelines()["default"]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    want = service_flow(encode(cat, fmt, **extra), pipeline).model_inputs()[0]
    for k in range(1, 9):
        data = xmp_oriented(STORED_FOR_ORIENTATION[k](cat), fmt, k)
        assert np.array_equal(service_flow(data, pipeline).model_inputs()[0], want), k


@pytest.mark.parametrize("k", [3, 6, 8])
def test_orientation_only_in_xmp_is_applied_to_jpegs(
    k: int, cat: Image.Image, oriented_jpeg: Callable[..., bytes], diff: Diff
) -> None:
    from tests.conftest import STORED_FOR_ORIENTATION
    from tests.imaging.test_sniff import xmp_oriented

    pipeline = builtin_pipelines()["default"]
    upright = service_flow(oriented_jpeg(1), pipeline).image
    data = xmp_oriented(STORED_FOR_ORIENTATION[k](cat), "JPEG", k)
    assert diff(service_flow(data, pipeline).image, upright) < 3.0


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (513, 301), (225, 150), (640, 427)])
def test_default_gives_the_reference_recipes_input_for_lossless_images(
    size: tuple[int, int], cat: Image.Image, encode: Any
) -> None:
    """The reference: bicubic short side to 256 (long side truncated), centre crop 224 at
    torchvision's rounded offsets. Ours resizes once, from a box on that grid."""
    upright = cat.resize(size, Image.Resampling.LANCZOS)
    width, height = size
    whole = (
        (256, int(256 * height / width)) if width <= height else (int(256 * width / height), 256)
    )
    left, top = round((whole[0] - 224) / 2), round((whole[1] - 224) / 2)
    reference = upright.resize(whole, Image.Resampling.BICUBIC).crop(
        (left, top, left + 224, top + 224)
    )
    (ours,) = service_flow(encode(upright, "PNG"), builtin_pipelines()["default"]).model_inputs()
    # Pillow rounds to 8 bits between its two passes, whose extents differ: a level or two
    # apart here and there. Half a pixel off the grid (as before issue 17) is far more.
    delta = np.abs(ours.astype(int) - np.asarray(reference, dtype=int))
    assert delta.max() <= 2 and delta.mean() < 0.2, (delta.max(), delta.mean())


def test_every_orientation_of_a_reduced_rgba_png_gives_one_model_input(
    cat: Image.Image, encode: Any
) -> None:
    from tests.conftest import STORED_FOR_ORIENTATION

    upright = cat.resize((1001, 777), Image.Resampling.LANCZOS).convert("RGBA")
    upright.putalpha(Image.linear_gradient("L").resize(upright.size))
    pipeline = builtin_pipelines()["default"]
    want = service_flow(encode(upright, "PNG"), pipeline).model_inputs()[0]
    for k in (2, 5, 7):
        tags = Image.Exif()
        tags[0x0112] = k
        data = encode(STORED_FOR_ORIENTATION[k](upright), "PNG", exif=tags.tobytes())
        assert np.array_equal(service_flow(data, pipeline).model_inputs()[0], want), k
