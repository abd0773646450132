"""Hypothesis profiles for the fuzz targets: a deterministic CI smoke run and a long run.

CI (default): `IMGEST_FUZZ_EXAMPLES` unset -> a fixed, derandomized set of examples per target.
Long run: `IMGEST_FUZZ_EXAMPLES=200000 .venv/bin/pytest tests/fuzz -p no:cacheprovider -q`
(random seeds, examples saved to .hypothesis/ so a finding replays). See docs/security.md.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_examples = os.environ.get("IMGEST_FUZZ_EXAMPLES")
settings.register_profile(
    "fuzz-ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long",
    max_examples=int(_examples or 0) or 1,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("fuzz-long" if _examples else "fuzz-ci")
