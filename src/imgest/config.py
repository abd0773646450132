"""Frozen settings: defaults, environment (IMGEST_*), an optional TOML file, validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from imgest.errors import ConfigError

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be told; each field is also `IMGEST_<NAME>` in the environment.

    Precedence: explicit arguments > environment > TOML file (`IMGEST_CONFIG`) > defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="IMGEST_",
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    # --- where things live ------------------------------------------------------------------
    storage_url: str = Field(
        "var/blobs",
        description="Blob store: a directory path or file:///abs/path (local), or memory://.",
    )
    catalog_url: str = Field(
        "sqlite:///var/catalog.db",
        description="SQLAlchemy URL of the catalog database (SQLite by default).",
    )
    model_dir: Path | None = Field(
        None,
        description="Directory holding model.toml, the ONNX file and labels; "
        "empty means the bundled EfficientNet-Lite0.",
    )
    public_url: str = Field(
        "",
        description="Base URL prefixed to links in responses (e.g. https://img.example.com); "
        "empty means links relative to the server root.",
    )

    # --- HTTP server ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `imgest serve` binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port `imgest serve` binds.")

    # --- upload limits ----------------------------------------------------------------------
    max_file_bytes: int = Field(50 * MiB, gt=0, description="Largest accepted file part, bytes.")
    max_request_bytes: int = Field(
        200 * MiB, gt=0, description="Largest accepted request body, bytes."
    )
    max_files: int = Field(32, gt=0, description="Most file parts in one request.")
    max_fields: int = Field(64, gt=0, description="Most text fields in one request.")
    max_field_bytes: int = Field(
        16 * 1024, gt=0, description="Largest accepted text field value, bytes."
    )
    max_header_bytes: int = Field(
        16 * 1024, gt=0, description="Largest accepted header block of one multipart part."
    )
    max_pixels: int = Field(
        50_000_000, gt=0, description="Largest accepted width x height, checked before decode."
    )
    max_frames: int = Field(1000, gt=0, description="Most frames accepted in an animated image.")

    # --- processing -------------------------------------------------------------------------
    pipeline: str = Field(
        "default",
        description="Pipeline rendered and scored at ingest: default (centre crop), "
        "stretch, pad, or one named in the pipelines file (checked at start-up).",
    )
    background: tuple[int, int, int] = Field(
        (255, 255, 255),
        description="RGB colour that transparent pixels and padding are composited on.",
    )
    top_k: int = Field(5, ge=1, le=100, description="Predictions returned per image.")
    workers: int = Field(
        0,
        ge=0,
        description="Threads for decode/resize/encode; 0 means one per CPU core.",
    )
    batch_max_size: int = Field(16, ge=1, description="Largest scoring micro-batch.")
    batch_max_wait_ms: float = Field(
        5.0, ge=0, description="Longest wait for a micro-batch to fill, milliseconds."
    )
    inference_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads; 0 means one per CPU core."
    )

    # --- scoring device (issue 4) -------------------------------------------------------------
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="onnxruntime execution provider: cpu, or cuda (needs onnxruntime-gpu and "
        "a GPU; start-up fails rather than fall back to the CPU).",
    )

    # --- models, pipelines, batching (issue 4) ----------------------------------------------
    pipelines_file: Path | None = Field(
        None,
        description="TOML file of named pipelines ([pipelines.NAME] steps = [...]); "
        "see docs/model.md. Empty means the built-ins only.",
    )
    batch_max_queue: int = Field(
        1024,
        ge=1,
        description="Most model inputs waiting to be scored; beyond it uploads get 503 "
        "(scoring_queue_full) with Retry-After.",
    )
    active_model_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long a server trusts its cached idea of the active model before "
        "re-reading the registry (so `imgest models activate` reaches every replica).",
    )

    @field_validator("background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in value):
            raise ValueError("each channel must be 0..255")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("IMGEST_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings; a bad value raises ConfigError naming the key."""
    toml_path = os.environ.get("IMGEST_CONFIG")
    if toml_path and not Path(toml_path).is_file():
        raise ConfigError(f"IMGEST_CONFIG: no such file: {toml_path}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            lines.append(f"IMGEST_{key.upper()} ({key}): {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
