"""Pipeline steps by name, from the `imgest.steps` entry point group (built-ins and plugins).

The built-in steps in imgest.imaging.steps register in pyproject.toml exactly the way a third
party's package would:

    [project.entry-points."imgest.steps"]
    vignette = "mypkg.steps:vignette"

A step is a function `(img: PIL.Image.Image, *, param=default, ...) -> PIL.Image.Image` with
keyword-only parameters (their defaults fill in the canonical spec, so a pipeline's version
covers them). It must keep the image RGB and, unless it is `resize` or `center_crop`, its size.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from imgest.imaging.steps import STEPS, Step

ENTRY_POINT_GROUP = "imgest.steps"


@functools.cache
def registered_steps() -> Mapping[str, Step]:
    """Every step name -> function registered in the `imgest.steps` group (loaded once)."""
    found: dict[str, Step] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        step = entry.load()
        if not callable(step):
            raise TypeError(f"imgest.steps entry point {entry.name!r} is not callable: {step!r}")
        found[entry.name] = step
    missing = sorted(set(STEPS) - set(found))
    if missing:
        # The package metadata predates these steps: an old install, not a user error.
        raise RuntimeError(
            f"built-in pipeline steps {missing} are not registered in the {ENTRY_POINT_GROUP!r} "
            "entry point group; reinstall imgest (pip install -e .)"
        )
    return MappingProxyType(found)


def get_step(name: str) -> Step:
    """The step registered as `name`; ValueError naming the known steps otherwise."""
    steps = registered_steps()
    if name not in steps:
        raise ValueError(f"unknown pipeline step {name!r}; known: {sorted(steps)}")
    return steps[name]
