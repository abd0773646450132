"""Named, versioned pipelines (decode + steps + JPEG output) and the renditions they render."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from imgest.imaging.decode import DEFAULT_MAX_ICC_BYTES, Decoded, decode_exact
from imgest.imaging.registry import get_step
from imgest.imaging.sniff import ImageInfo
from imgest.imaging.steps import (
    CHECKS,
    RUNTIME_PARAMS,
    Aggregate,
    ResizeMode,
    resize_min_input,
    split,
)

Size = tuple[int, int]
RGB = tuple[int, int, int]
ParamValue = str | int | float | bool | tuple[int, ...]
Params = tuple[tuple[str, ParamValue], ...]
StepSpec = tuple[str, Params]

# Bump when decode_exact() changes the pixels it delivers (orientation, colour, alpha, DCT scaling
# policy): every pipeline's version changes with it, so old renditions are not mixed with new.
# Bump it too when a built-in step changes what it does with the same parameters.
# 2: orientation given only in XMP (tiff:Orientation) is applied, as Pillow's exif_transpose
#    does; box reductions stop at twice the size wanted and put their partial block where
#    orientation 1 has it; resize's crop box is placed on the reference recipe's pixel grid.
RENDER_REVISION = 2
JPEG_SUBSAMPLING = "4:4:4"  # chroma at full resolution: a 224 px rendition has none to spare
# Steps decode_exact() always applies (EXIF/HEIF orientation, colour management to RGB): a spec may
# name them for clarity; they are dropped from the canonical spec, since they change nothing.
IMPLICIT_STEPS = frozenset({"orient", "to_rgb"})


@dataclass(frozen=True)
class Pipeline:
    """A named list of steps with their parameters; `version` hashes everything but the name.

    `steps` are stored canonically: sorted (key, value) tuples with every default filled in
    and lists as tuples, so equal pipelines compare and hash equal (`build` takes Mappings).
    """

    name: str
    steps: tuple[StepSpec, ...]
    background: RGB = (255, 255, 255)  # transparent pixels are composited onto this
    output: str = "jpeg"
    quality: int = 90

    @classmethod
    def build(
        cls,
        name: str,
        steps: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        background: RGB = (255, 255, 255),
        output: str = "jpeg",
        quality: int = 90,
    ) -> Pipeline:
        """A pipeline from (step name, {param: value}) pairs, e.g. as read from config."""
        canonical = tuple(
            canonical_step(step, params) for step, params in steps if step not in IMPLICIT_STEPS
        )
        return cls(name, canonical, background=background, output=output, quality=quality)

    def __post_init__(self) -> None:
        steps = tuple(
            canonical_step(name, params)
            for name, params in self.steps
            if name not in IMPLICIT_STEPS
        )
        object.__setattr__(self, "steps", steps)
        background = tuple(self.background)
        if len(background) != 3 or not all(
            isinstance(v, int) and 0 <= v <= 255 for v in background
        ):
            raise ValueError(f"pipeline {self.name!r}: background must be an RGB triple 0..255")
        object.__setattr__(self, "background", background)
        names = [name for name, _ in steps]
        if names.count("resize") != 1:
            raise ValueError(f"pipeline {self.name!r} needs exactly one resize step")
        if "center_crop" in names[: names.index("resize")]:
            raise ValueError(f"pipeline {self.name!r}: center_crop must come after resize")
        if "tile" in names and names.index("tile") != len(names) - 1:
            raise ValueError(f"pipeline {self.name!r}: tile must be the last step (and only one)")
        width, height = self.size  # checks that each center_crop fits
        rows, cols = self.grid
        if width % cols or height % rows:
            raise ValueError(
                f"pipeline {self.name!r}: a {width}x{height} rendition does not split into "
                f"{rows}x{cols} equal tiles"
            )
        if self.output != "jpeg":
            raise ValueError(f"pipeline {self.name!r}: output must be 'jpeg'")
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ValueError(f"pipeline {self.name!r}: quality must be in 1..100")

    @property
    def spec(self) -> dict[str, Any]:
        """Everything that determines the rendition's bytes, as plain JSON-able data."""
        return {
            "revision": RENDER_REVISION,
            "background": list(self.background),
            "steps": [
                {"step": name, "params": {k: _jsonable(v) for k, v in params}}
                for name, params in self.steps
            ],
            "output": {
                "format": self.output,
                "quality": self.quality,
                "subsampling": JPEG_SUBSAMPLING,
            },
        }

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON spec."""
        canonical = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def size(self) -> Size:
        """The rendition's (width, height): the resize size, narrowed by any center_crop."""
        size: Size | None = None
        for name, params in self.steps:
            if name not in ("resize", "center_crop"):
                continue
            value = dict(params)["size"]
            assert isinstance(value, tuple)
            new = (value[0], value[1])
            if size is not None and (new[0] > size[0] or new[1] > size[1]):
                raise ValueError(
                    f"pipeline {self.name!r}: center_crop {new} is larger than the {size} it crops"
                )
            size = new
        assert size is not None
        return size

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of model inputs per image: (1, 1) unless the pipeline ends in tile."""
        params = self._tile_params()
        if params is None:
            return 1, 1
        rows, cols = params["rows"], params["cols"]
        assert isinstance(rows, int) and isinstance(cols, int)
        return rows, cols

    @property
    def aggregate(self) -> Aggregate:
        """How per-tile class probabilities become one answer: "mean" or "max" per class."""
        params = self._tile_params()
        return cast(Aggregate, params["aggregate"]) if params is not None else "mean"

    @property
    def input_size(self) -> Size:
        """The (width, height) of each model input: the rendition size over the tile grid."""
        (width, height), (rows, cols) = self.size, self.grid
        return width // cols, height // rows

    def min_decode_size(self, width: int, height: int) -> Size:
        """What decode_exact() must at least deliver for an upright `width` x `height` original."""
        params = self._resize_params()
        mode, crop = cast(ResizeMode, params["mode"]), params["crop"]
        assert isinstance(crop, float)
        return resize_min_input(width, height, size=self.size, mode=mode, crop=crop)

    def render(
        self,
        data: bytes,
        info: ImageInfo,
        *,
        max_icc_bytes: int = DEFAULT_MAX_ICC_BYTES,
        scaled_decode: bool = True,
    ) -> Rendition:
        """Decode `data` (already probed and checked) and run the steps. Without
        `scaled_decode` it is decoded whole (the fidelity bench's control)."""
        width, height = info.oriented_size
        decoded = decode_exact(
            data,
            info,
            min_size=self.min_decode_size(width, height) if scaled_decode else None,
            background=self.background,
            max_icc_bytes=max_icc_bytes,
        )
        return self.apply(decoded)

    def apply(self, decoded: Decoded) -> Rendition:
        """Run the steps on an upright sRGB decode (at least `min_decode_size`)."""
        img = decoded.image
        for name, params in self.steps:
            step = get_step(name)
            if name == "resize":
                img = step(img, content=decoded.content, **dict(params))
            else:
                img = step(img, **dict(params))
        return Rendition(img, quality=self.quality, grid=self.grid, aggregate=self.aggregate)

    def _resize_params(self) -> dict[str, ParamValue]:
        return next(dict(params) for name, params in self.steps if name == "resize")

    def _tile_params(self) -> dict[str, ParamValue] | None:
        return next((dict(params) for name, params in self.steps if name == "tile"), None)


@dataclass(frozen=True)
class Rendition:
    """A pipeline's output image, exactly `pipeline.size`, in RGB.

    For a tiled pipeline the image is still the whole picture (what is stored and served);
    `model_inputs` cuts it into `grid` = (rows, cols) tiles, each `pipeline.input_size`.
    """

    image: Image.Image
    quality: int = 90
    grid: tuple[int, int] = (1, 1)
    aggregate: Aggregate = "mean"
    content_type: str = field(default="image/jpeg", init=False)
    extension: str = field(default="jpg", init=False)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.image.width

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.image.height

    def pixels(self) -> npt.NDArray[np.uint8]:
        """A fresh, writable H x W x 3 uint8 array of the pixels."""
        return np.array(self.image, dtype=np.uint8)

    def model_inputs(self) -> list[npt.NDArray[np.uint8]]:
        """What the model scores: fresh H x W x 3 uint8 arrays, one per tile, row by row
        (one element, the whole image, for an untiled pipeline)."""
        return [np.array(t, dtype=np.uint8) for t in split(self.image, *self.grid)]

    def encode(self) -> bytes:
        """The image as a baseline JPEG at the pipeline's quality, 4:4:4."""
        out = io.BytesIO()
        self.image.save(out, "JPEG", quality=self.quality, subsampling=JPEG_SUBSAMPLING)
        return out.getvalue()


def builtin_pipelines(
    size: Size = (224, 224),
    crop: float = 0.875,
    background: RGB = (255, 255, 255),
    filter: str = "bicubic",
) -> dict[str, Pipeline]:
    """The built-in pipelines: "default" (centre crop), "stretch" and "pad".

    They resample with `filter`, bicubic as the model's reference preprocessing does.
    """

    def resize(mode: str) -> StepSpec:
        params = {
            "size": size,
            "mode": mode,
            "crop": crop,
            "filter": filter,
            "background": background,
        }
        return "resize", _canonical_params("resize", params)

    return {
        "default": Pipeline("default", (resize("crop"),), background=background),
        "stretch": Pipeline("stretch", (resize("stretch"),), background=background),
        "pad": Pipeline("pad", (resize("pad"),), background=background),
    }


def canonical_step(name: str, params: Params | Mapping[str, Any]) -> StepSpec:
    """(name, sorted params with defaults filled in); ValueError for unknown steps or params."""
    get_step(name)  # unknown names fail here, naming the known ones
    return name, _canonical_params(name, params)


def _canonical_params(name: str, params: Params | Mapping[str, Any]) -> Params:
    """Sorted (key, value) pairs with the step's defaults filled in and lists as tuples."""
    given = dict(params.items() if isinstance(params, Mapping) else params)
    signature = inspect.signature(get_step(name))
    merged: dict[str, ParamValue] = {}
    for pname, param in signature.parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or pname in RUNTIME_PARAMS:
            continue
        if pname in given:
            value = given.pop(pname)
            # 1 and 1.0 must not make two versions of one pipeline.
            if isinstance(param.default, float) and isinstance(value, int):
                value = float(value)
            _check_type(name, pname, value, param.default)
            merged[pname] = _hashable(value)
        elif param.default is not inspect.Parameter.empty:
            merged[pname] = _hashable(param.default)
        else:
            raise ValueError(f"step {name!r} needs parameter {pname!r}")
    if given:
        raise ValueError(f"step {name!r} has no parameter(s) {sorted(given)}")
    if name in CHECKS:
        CHECKS[name](**merged)
    return tuple(sorted(merged.items()))


def _check_type(step: str, key: str, value: Any, default: Any) -> None:
    """A value must have its default's type (bool is not an int; a list stands for a tuple)."""
    if default is inspect.Parameter.empty or default is None:
        return
    want = tuple if isinstance(default, tuple) else type(default)
    have = tuple if isinstance(value, list) else type(value)
    if have is not want:
        raise ValueError(f"step {step!r} parameter {key!r} must be {want.__name__}, got {value!r}")


def _hashable(value: Any) -> ParamValue:
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"unsupported parameter value {value!r}")


def _jsonable(value: ParamValue) -> Any:
    return list(value) if isinstance(value, tuple) else value
