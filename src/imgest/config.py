"""Frozen settings: defaults, environment (IMGEST_*), an optional TOML file, validation.

Why one long module: it is the one frozen Settings, a field per setting with its bounds and
its description, and docs/configuration.md and the limits table in docs/security.md are
generated from those descriptions; the length is the settings reference itself.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from imgest.errors import ConfigError

MiB = 1024 * 1024
_D = TypeVar("_D")


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
        description="Blob store: a directory path or file:///abs/path (local), memory://, "
        "azure://<container>[/<prefix>]?... or s3://<bucket>[/<prefix>]?... "
        "(see docs/storage.md).",
    )
    catalog_url: str = Field(
        "sqlite:///var/catalog.db",
        description="SQLAlchemy URL of the catalog database: sqlite:///path (default) or "
        "postgresql://user:password@host:5432/db (psycopg 3, the `postgres` extra).",
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
    max_scans: int = Field(
        100,
        gt=0,
        lt=100_000,
        description="Most scans accepted in a (progressive) JPEG, counted from its segments "
        "before decode; encoders write about 10, each scan costs a pass over the image. "
        "Beyond it: 422 image_too_complex.",
    )
    max_decode_bytes: int = Field(
        512 * MiB,
        gt=0,
        description="Most memory one image's decode may take, estimated from the header "
        "before decode: pixels (after JPEG's reduced-size decode) x bytes per pixel of the "
        "decode path (JPEG RGB 7, PNG/TIFF RGB 4, 16-bit grey 3, float 5, alpha +4, WebP 16, "
        "HEIF/AVIF 8). "
        "Beyond it: 422 image_too_much_memory.",
    )
    max_icc_bytes: int = Field(
        4 * MiB,
        gt=0,
        description="Largest embedded ICC profile used for colour management; a bigger one is "
        "ignored (the pixels are taken as sRGB) and a warning logged.",
    )

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
    intermediate: int = Field(
        0,
        ge=0,
        le=8192,
        description="Least long side in pixels of the intermediate stored with each new "
        "upload at least twice that size: the upload's own DCT-scaled decode at 1/8, 1/4 or "
        "1/2 (the smallest that keeps this long side), as one JPEG q90 4:4:4, upright sRGB. "
        "On-demand renditions and rescore render from it where the original's decode for "
        "the pipeline would be no larger; off (or 0) stores none. 720 (12 MP photos: "
        "1008 x 756) is what docs/intermediate.md measures; `imgest backfill` stores them "
        "for the images already stored.",
    )
    top_k: int = Field(5, ge=1, le=100, description="Predictions returned per image.")
    workers: int = Field(
        0,
        ge=0,
        description="Threads for decode/resize/encode; 0 means one per CPU core.",
    )
    batch_max_size: int = Field(
        4,
        ge=1,
        description="Largest scoring micro-batch (inputs from concurrent requests scored "
        "together). On the CPU onnxruntime runs at most 4 inputs at a time whatever this is: "
        "bigger runs were slower per image and keep a bigger arena, about 8 MB per input for "
        "the bundled model (docs/benchmarks.md); on a GPU a batch is one run.",
    )
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

    # --- near-duplicates and similar images (issue 17) ----------------------------------------
    near_duplicates: Literal["flag", "reject", "off"] = Field(
        "flag",
        description="What an upload does about images already stored that its embedding is at "
        "least near_duplicate_threshold similar to: flag (store it and list them in "
        "`near_duplicates`), reject (409 near_duplicate, nothing stored), off (no search). "
        "Needs a model with an embedding output (the bundled one has one).",
    )
    near_duplicate_threshold: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Cosine similarity of embeddings from which a stored image counts as a "
        "near-duplicate of an upload. Calibrated by bench/near_duplicates.py on 57 real photos "
        "and 18 kinds of generated near-duplicate: precision 0.999, recall 0.951 "
        "(docs/similarity-index.md).",
    )
    near_duplicates_max: int = Field(
        5, ge=1, le=100, description="Most near-duplicates listed per uploaded file."
    )

    # --- idempotency keys (issue 5) -----------------------------------------------------------
    idempotency_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="How long an Idempotency-Key and its stored response are kept, seconds.",
    )
    idempotency_lock_s: float = Field(
        600.0,
        gt=0,
        description="After this many seconds a request still marked in flight under an "
        "Idempotency-Key (its process died) no longer blocks a retry with that key.",
    )
    # --- security, backpressure, timeouts, observability (issue 6) ---------------------------
    auth: Literal["off", "keys"] = Field(
        "off",
        description="off: no authentication (loopback only unless `insecure`); keys: every "
        "/v1 request needs `Authorization: Bearer <key>` with the route's scope "
        "(see docs/security.md).",
    )
    insecure: bool = Field(
        False,
        description="Allow `imgest serve` to bind a non-loopback address with auth off.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="Host names (the `Host` header, port ignored) the server answers besides "
        "the loopback names (localhost, 127.0.0.0/8, ::1), the bind host and public_url's "
        'host, e.g. ["img.example.com"]; ["*"] allows any. Others: 400 host_not_allowed.',
    )
    cors_origins: tuple[str, ...] = Field(
        (),
        description='Origins allowed by CORS, e.g. ["https://app.example.com"]; empty: no '
        "CORS headers.",
    )
    metrics: Literal["open", "admin", "off"] = Field(
        "admin",
        description="GET /metrics: admin (needs the admin scope when auth is on; open when it "
        "is off), open to all, or off (404).",
    )
    api_docs: Literal["open", "read", "off"] = Field(
        "read",
        description="/docs, /redoc and /openapi.json: read (need the read scope when auth is "
        "on; open when it is off), open to all, or off (not served: 404).",
    )
    readyz_counters: Literal["open", "admin", "off"] = Field(
        "admin",
        description="The work counters in GET /readyz: admin (shown to an admin key when auth "
        "is on, to all when it is off), open (shown to all), or off (never shown). The "
        "readiness status and checks are always open.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="Proxies trusted for X-Forwarded-For/-Proto (comma-separated addresses or "
        "networks, * for any); the client address then comes from the proxy.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object per line."
    )
    max_active_uploads: int = Field(
        0,
        ge=0,
        description="Upload requests reading their body or processing at once; 0 means twice "
        "the decode threads (`workers`), enough to keep them busy.",
    )
    max_queued_uploads: int = Field(
        64,
        ge=0,
        description="Upload requests waiting for a slot; beyond it: 503 server_busy at once.",
    )
    max_inflight_bytes: int = Field(
        128 * MiB,
        gt=0,
        description="Body bytes (Content-Length; max_request_bytes when chunked) of the active "
        "uploads together; one upload alone is always let in.",
    )
    max_uploads_per_client: int = Field(
        0,
        ge=0,
        description="Uploads one client (API key, else address) may have active or queued; "
        "beyond it: 429 rate_limited. 0: no per-client cap.",
    )
    queue_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for an upload slot before 503 server_busy."
    )
    retry_after_s: int = Field(
        2, ge=0, description="Retry-After (seconds) sent with 429 and 503 answers."
    )
    max_request_head_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest accepted request line plus headers, bytes; larger: 431 "
        "request_head_too_large and the connection closed (also while it is still arriving).",
    )
    max_body_bytes: int = Field(
        64 * 1024,
        gt=0,
        description="Largest accepted request body of every route but the upload (JSON bodies "
        "such as PATCH), bytes; larger: 413 request_too_large.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest time to receive a request's headers before the connection closes.",
    )
    keep_alive_timeout_s: int = Field(
        5, gt=0, description="Idle keep-alive connections close after this many seconds."
    )
    body_idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait for the next chunk of any request body before 408.",
    )
    body_min_bytes_per_s: int = Field(
        1024,
        ge=0,
        description="Slowest average rate accepted for any request body once it has taken "
        "body_idle_timeout_s; slower: 408. 0: no minimum.",
    )
    send_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest a response may wait for a client that stops reading it (the "
        "server's send buffer full) before the connection is dropped.",
    )

    # --- catalog database (issue 3) ---------------------------------------------------------
    catalog_connect_timeout_s: float = Field(
        5.0,
        gt=0,
        description="PostgreSQL: longest wait to connect, seconds (whole, at least 2); "
        "a down database answers 503 catalog_unavailable after at most this long.",
    )
    catalog_statement_timeout_s: float = Field(
        30.0,
        ge=0,
        description="PostgreSQL: longest one statement may run, seconds; 0 means no limit "
        "(migrations never have one). SQLite: longest wait for another writer's lock "
        "(0 means 30 s).",
    )
    catalog_pool_size: int = Field(
        5, ge=1, description="PostgreSQL: connections each process keeps open."
    )
    catalog_pool_max_overflow: int = Field(
        10, ge=0, description="PostgreSQL: extra connections a process may open under load."
    )
    catalog_pool_timeout_s: float = Field(
        10.0, gt=0, description="PostgreSQL: longest wait for a free pooled connection, seconds."
    )
    # --- storage backends (issue 3) -------------------------------------------------------
    storage_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest blob-store call before 503 storage_unavailable; Azure/S3 also use "
        "it as the wait for one request to connect (at most 10 s) or to send more bytes (a "
        "URL's timeout= parameter overrides that).",
    )
    storage_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Azure/S3: retries of a failed request (connection error, timeout, 5xx), "
        "with jittered exponential backoff; a URL's retries= parameter overrides it.",
    )
    storage_group_commit: bool = Field(
        True,
        description="Local stores on ext4, XFS, Btrfs, F2FS, ZFS, overlayfs or tmpfs: the puts "
        "of concurrent requests share one flush of the filesystem (syncfs), each request still "
        "answered only once its blobs are durable. false: one fsync per blob (a store sharing "
        "its filesystem with a busy database, whose writes a syncfs flushes too).",
    )
    storage_drop_cache: bool = Field(
        True,
        description="Local stores: once a blob is durable, advise the kernel to drop its pages "
        "from the page cache (posix_fadvise DONTNEED), so uploads written once do not push out "
        "the cache the rest of the host uses; docs/benchmarks.md measures the CPU it saves. "
        "false: keep them cached (blobs read back right after they are stored).",
    )
    catalog_lease_ttl_s: float = Field(
        300.0,
        gt=0,
        description="Blob leases (catalog rows that order blob writes before gc or a delete "
        "removes them): one older than this is stale and dropped, seconds. More than twice "
        "storage_timeout_s: a deleter sends no delete after half of it. Hosts' clocks must "
        "agree to well within it.",
    )

    signed_url_ttl_s: int = Field(
        300,
        ge=1,
        le=7 * 24 * 3600,
        description="Lifetime of the SAS/presigned URL that ?redirect=true sends clients to, "
        "seconds (Azure and S3 stores; others serve the bytes themselves).",
    )

    # --- memory (issue 7) --------------------------------------------------------------------
    malloc_arena_max: int = Field(
        2,
        ge=0,
        description="glibc malloc arenas for `imgest serve` (mallopt M_ARENA_MAX); "
        "0 keeps glibc's default of 8 per core.",
    )
    malloc_mmap_threshold: int = Field(
        0,
        ge=0,
        le=32 * MiB,
        description="Allocations of at least this many bytes get their own mmap and go back "
        "to the OS when freed (mallopt M_MMAP_THRESHOLD); 0 keeps glibc's dynamic threshold, "
        "which reuses big buffers instead of faulting in fresh pages for each (faster; 1048576 "
        "lowers peak RSS a little: docs/benchmarks.md).",
    )

    # --- similar images: the ANN index (issue 17, part 3) -----------------------------------
    ann_min_vectors: int = Field(
        2_000,
        ge=0,
        description="Embeddings of one model version from which similar-image search uses the "
        "ANN index built by `imgest index rebuild` (exact search below, or while no build "
        "exists); measured in docs/similarity-index.md.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for entry in value:
            name = entry.strip().lower().rstrip(".")
            if not name or any(c in name for c in "/@ \t") or name.count(":") == 1:
                raise ValueError(
                    f"{entry!r} is not a host name: give names like img.example.com or "
                    "192.0.2.7, without scheme, port or path (or * for any host)"
                )
            names.append(name.strip("[]"))
        return tuple(names)

    @field_validator("catalog_lease_ttl_s")
    @classmethod
    def _lease_outlives_a_delete(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("storage_timeout_s")
        if timeout is not None and value <= 2 * timeout:
            raise ValueError(f"must be more than twice storage_timeout_s ({timeout:g} s)")
        return value

    @field_validator("intermediate", mode="before")
    @classmethod
    def _intermediate(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "off":
            return 0
        return value

    @field_validator("intermediate")
    @classmethod
    def _intermediate_range(cls, value: int) -> int:
        if 0 < value < 64:
            raise ValueError("give a long side of at least 64 pixels, or off")
        return value

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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"IMGEST_CONFIG: {toml_path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            lines.append(f"IMGEST_{key.upper()} ({key}): {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def from_settings(
    cls: type[_D], settings: Settings, *, prefix: str = "", fixed: Collection[str] = ()
) -> _D:
    """The dataclass `cls` with each field set from the setting `prefix + <field name>`.

    Every field must have its setting, except those named in `fixed`, which keep their
    defaults (and must have no setting): a field added to such a dataclass without a setting
    (or a setting renamed) is a programming error, TypeError here, never a default kept
    silently. So a new limit needs a setting and no line at its caller.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    known = type(settings).model_fields
    missing = [n for n in names if n not in fixed and prefix + n not in known]
    if missing or not set(fixed) <= set(names) or any(prefix + n in known for n in fixed):
        raise TypeError(
            f"{cls.__name__}: fields without a setting {prefix}<name>: {missing}; "
            f"fixed (default kept, no setting): {sorted(fixed)}"
        )
    return cls(**{n: getattr(settings, prefix + n) for n in names if n not in fixed})
