"""Named pipelines: the built-ins plus those a TOML file declares (`IMGEST_PIPELINES_FILE`).

    [pipelines.tiles2x2]
    steps = [
      { step = "resize", size = [448, 448], mode = "crop" },
      { step = "tile", rows = 2, cols = 2, aggregate = "mean" },
    ]

Each `[pipelines.NAME]` table has `steps` (a list of tables: `step` = a registered step name,
the other keys its parameters) and optionally `background` (RGB) and `quality` (JPEG, 1..100).
Any mistake is a ConfigError naming the file, the pipeline and the key.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgest.errors import ConfigError
from imgest.imaging.pipeline import (
    IMPLICIT_STEPS,
    RGB,
    Pipeline,
    Size,
    StepSpec,
    builtin_pipelines,
    canonical_step,
)
from imgest.storage.paths import INTERMEDIATE

if TYPE_CHECKING:
    from imgest.config import Settings

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # it is a URL segment and a blob path segment
_PIPELINE_KEYS = frozenset({"steps", "background", "quality"})


def load_pipelines(
    source: Settings | Path | str | None = None,
    *,
    size: Size = (224, 224),
    crop: float = 0.875,
    background: RGB | None = None,
) -> dict[str, Pipeline]:
    """Built-ins (sized for the model: `size`, `crop`) plus the pipelines of a TOML file.

    `source` is the Settings (their `pipelines_file` and `background`), a file path, or None
    for the built-ins alone.
    """
    path: Path | None
    if source is None or isinstance(source, str | Path):
        path = Path(source) if source else None
    else:
        path = source.pipelines_file
        background = background or source.background
    background = background or (255, 255, 255)
    pipelines = builtin_pipelines(size=size, crop=crop, background=background)
    if path is None:
        return pipelines
    for name, pipeline in parse_pipelines(path, background=background).items():
        if name in pipelines:
            raise ConfigError(f"{path}: pipeline {name!r} is built in; pick another name")
        if name == INTERMEDIATE:
            raise ConfigError(
                f"{path}: pipeline name {name!r} is reserved for the images' intermediates; "
                "pick another name"
            )
        pipelines[name] = pipeline
    return pipelines


def parse_pipelines(path: Path, *, background: RGB = (255, 255, 255)) -> dict[str, Pipeline]:
    """The pipelines a TOML file declares; ConfigError naming the pipeline and key if bad."""
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"pipelines file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pipelines file {path}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"pipelines"})
    if extra:
        raise ConfigError(f"pipelines file {path}: unknown top-level key(s) {extra}")
    tables = doc.get("pipelines", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"pipelines file {path}: 'pipelines' must be a table of pipelines")
    return {name: _pipeline(path, name, table, background) for name, table in tables.items()}


def _pipeline(path: Path, name: str, table: Any, background: RGB) -> Pipeline:
    where = f"pipelines file {path}: pipeline {name!r}"
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: names are lower-case letters, digits, '-' and '_'")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table with a 'steps' list")
    extra = sorted(set(table) - _PIPELINE_KEYS)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra}; known: {sorted(_PIPELINE_KEYS)}")
    steps = table.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{where}: 'steps' must be a non-empty list of tables")
    parsed: list[StepSpec] = []
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not isinstance(step.get("step"), str):
            raise ConfigError(f"{where}: steps[{i}] needs a 'step' name")
        params = {k: v for k, v in step.items() if k != "step"}
        if step["step"] in IMPLICIT_STEPS:
            if params:
                raise ConfigError(f"{where}: steps[{i}] ({step['step']}) takes no parameters")
            continue  # decode always does it (see IMPLICIT_STEPS)
        try:
            parsed.append(canonical_step(step["step"], params))
        except ValueError as exc:
            raise ConfigError(f"{where}: steps[{i}] ({step['step']}): {exc}") from None
    try:
        return Pipeline(
            name,
            tuple(parsed),
            background=tuple(table.get("background", background)),
            quality=table.get("quality", 90),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
