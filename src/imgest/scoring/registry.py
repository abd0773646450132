"""The model registry: model versions in the catalog, their ONNX bytes in blob storage.

A version is the SHA-256 of the ONNX file. The catalog's `models` table holds each version's
name, input spec, output kind and labels, and which one is active (every API replica shares
the catalog, so they agree); the bytes live at `models/<sha256>.onnx` in the blob store (the
bundled model stays in the package: location `bundled:<dir>`). A reference is `NAME` (the
active version of NAME if it is active, else its newest) or `NAME@VERSION` (any unique prefix
of at least 6 hex digits).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imgest.catalog.leases import Lease, lease_deletes, spend
from imgest.catalog.locks import lock_paths
from imgest.catalog.models import ModelRow
from imgest.catalog.repo import Catalog
from imgest.errors import UnknownModel
from imgest.scoring.model import BUNDLED_DIR, InputSpec, Model, ModelSpec, read_model_dir
from imgest.storage.base import BlobStore
from imgest.storage.once import delete_blobs, deleting, storage_errors, store_and_record
from imgest.storage.paths import model_path

BUNDLED_PREFIX = "bundled:"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MIN_VERSION_PREFIX = 6


@dataclass(frozen=True)
class RegisteredModel:
    """One registered model version (its weights are fetched by `ModelRegistry.load`)."""

    spec: ModelSpec
    version: str
    location: str
    active: bool
    created_at: datetime
    embedding_dim: int | None = None  # width of the graph's embedding output; None: none

    @property
    def name(self) -> str:
        """The model's name."""
        return self.spec.name

    @property
    def ref(self) -> str:
        """`name@version12`, what the CLI prints and accepts."""
        return f"{self.name}@{self.version[:12]}"


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`NAME[@VERSION]` -> (name, version prefix or None); UnknownModel if malformed."""
    name, _, version = ref.strip().partition("@")
    if not NAME.fullmatch(name):
        raise UnknownModel(f"{ref!r} is not NAME or NAME@VERSION.")
    if version and not re.fullmatch(rf"[0-9a-f]{{{MIN_VERSION_PREFIX},64}}", version.lower()):
        raise UnknownModel(
            f"Version {version!r} is not {MIN_VERSION_PREFIX} to 64 hex digits of the sha256."
        )
    return name, version.lower() or None


class ModelRegistry:
    """Add, list, resolve, activate and remove models; load one for scoring.

    The catalog methods block (call them from a worker thread in async code); `add`, `load`
    and `remove` are async because they touch blob storage.
    """

    def __init__(self, catalog: Catalog, store: BlobStore) -> None:
        self.catalog = catalog
        self.store = store

    # -- reads ------------------------------------------------------------------------------
    def list(self) -> list[RegisteredModel]:
        """Every registered version, by name then newest first."""
        query = select(ModelRow).order_by(ModelRow.name, ModelRow.created_at.desc())
        return self.catalog.transact(lambda s: [_entry(r) for r in s.execute(query).scalars()])

    def active(self) -> RegisteredModel | None:
        """The active model version, or None before any is activated."""
        query = select(ModelRow).where(ModelRow.active.is_(True))
        return self.catalog.transact(
            lambda s: next((_entry(r) for r in s.execute(query).scalars()), None)
        )

    def resolve(self, ref: str) -> RegisteredModel:
        """The version `NAME[@VERSION]` names; UnknownModel if none or ambiguous."""
        name, version = parse_ref(ref)
        return self.catalog.transact(lambda s: _entry(self._row(s, name, version, ref)))

    @staticmethod
    def _row(session: Session, name: str, version: str | None, ref: str) -> ModelRow:
        query = select(ModelRow).where(ModelRow.name == name)
        if version is not None:
            query = query.where(ModelRow.version.startswith(version, autoescape=True))
        rows = list(session.execute(query).scalars())
        if not rows:
            raise UnknownModel(f"No registered model matches {ref!r}; see `imgest models list`.")
        if version is None:
            active = [r for r in rows if r.active]
            return active[0] if active else max(rows, key=lambda r: r.created_at)
        if len(rows) > 1:
            raise UnknownModel(f"{ref!r} matches {len(rows)} versions; give more hex digits.")
        return rows[0]

    # -- writes -----------------------------------------------------------------------------
    def activate(self, ref: str) -> RegisteredModel:
        """Make `ref` the model uploads are scored with (the others become inactive)."""
        name, version = parse_ref(ref)

        def run(session: Session) -> RegisteredModel:
            row = self._row(session, name, version, ref)
            session.execute(update(ModelRow).where(ModelRow.active.is_(True)).values(active=False))
            row.active = True
            return _entry(row)

        return self.catalog.transact(run)

    async def add(
        self, data: bytes, spec: ModelSpec, *, activate: bool = False, check: bool = True
    ) -> RegisteredModel:
        """Register ONNX bytes with their spec (validated against the graph first).

        Registering the same name and bytes again changes nothing and returns the entry.
        """
        if not NAME.fullmatch(spec.name):
            raise UnknownModel(f"Model names are letters, digits, '.', '_' and '-': {spec.name!r}")

        def look() -> int | None:
            model = Model.from_bytes(data, spec, threads=1)
            if check:
                model.check()
            return model.embedding_dim

        dim = await anyio.to_thread.run_sync(look)
        version = hashlib.sha256(data).hexdigest()
        path = model_path(version)
        return await store_and_record(
            self.store,
            self.catalog,
            {path: data},
            lambda lease: self._insert(spec, version, path, activate, dim, lease),
        )

    async def add_bundled(self, directory: Path = BUNDLED_DIR) -> RegisteredModel:
        """Register a model shipped in the package (weights stay there, not copied)."""
        spec, onnx = read_model_dir(directory)
        version = hashlib.sha256(onnx.read_bytes()).hexdigest()
        location = BUNDLED_PREFIX + directory.name
        dim = await anyio.to_thread.run_sync(lambda: bundled_embedding_dim(directory, version))
        return await anyio.to_thread.run_sync(
            lambda: self._insert(spec, version, location, False, dim)
        )

    async def ensure_default(self, directory: Path | None = None) -> RegisteredModel:
        """First start: register the bundled model (or `directory`'s) and activate it unless a
        model is active already. Returns the active model."""
        if directory is None or directory.resolve() == BUNDLED_DIR.resolve():
            entry = await self.add_bundled()
        else:
            spec, onnx = read_model_dir(directory)
            entry = await self.add(onnx.read_bytes(), spec)
        active = await anyio.to_thread.run_sync(self.active)
        if active is not None:
            return active
        return await anyio.to_thread.run_sync(lambda: self.activate(entry.ref))

    def _insert(
        self,
        spec: ModelSpec,
        version: str,
        location: str,
        activate: bool,
        embedding_dim: int | None = None,
        lease: Lease | None = None,
    ) -> RegisteredModel:
        def run(session: Session) -> RegisteredModel:
            if lease is not None:  # the weights were stored under it (imgest.storage.once)
                lock_paths(session, [location])
                spend(session, lease)
            row = session.get(ModelRow, (spec.name, version))
            if row is None:
                row = ModelRow(
                    name=spec.name,
                    version=version,
                    input=spec.input.to_dict(),
                    output=spec.output,
                    labels=list(spec.labels),
                    location=location,
                    active=False,
                    created_at=datetime.now(UTC),
                    embedding_dim=embedding_dim,
                )
                session.add(row)
            elif row.embedding_dim is None and embedding_dim is not None:
                row.embedding_dim = embedding_dim  # registered before the registry looked
            if activate:
                session.execute(
                    update(ModelRow).where(ModelRow.active.is_(True)).values(active=False)
                )
                row.active = True
            session.flush()
            return _entry(row)

        entry = self.catalog.transact(run)
        if lease is not None:
            lease.spent = True
        return entry

    async def remove(self, ref: str, *, force: bool = False) -> RegisteredModel:
        """Unregister a version (not the active one unless `force`); its blob goes too when no
        other name uses the same bytes. Predictions made with it stay."""
        name, version = parse_ref(ref)

        def run(session: Session, lease: Lease) -> RegisteredModel:
            row = self._row(session, name, version, ref)
            if row.active and not force:
                raise UnknownModel(
                    f"{row.name}@{row.version[:12]} is the active model; activate another first."
                )
            entry = _entry(row)
            if not entry.location.startswith(BUNDLED_PREFIX):
                lock_paths(session, [entry.location])
            session.delete(row)
            session.flush()
            shared = session.execute(
                select(ModelRow.name).where(ModelRow.version == entry.version)
            ).first()
            if shared is None and not entry.location.startswith(BUNDLED_PREFIX):
                # The weights go after the commit, under a delete lease (imgest.storage.once);
                # if the delete fails they stay, unreferenced.
                lease_deletes(session, lease, [entry.location], self.catalog.lease_ttl)
            return entry

        def take(lease: Lease) -> RegisteredModel:
            return self.catalog.transact(lambda session: run(session, lease))

        async with deleting(self.catalog, take) as (entry, deletion):
            await delete_blobs(self.store, deletion)
        return entry

    # -- weights ----------------------------------------------------------------------------
    async def read_bytes(self, entry: RegisteredModel) -> bytes:
        """The ONNX bytes of a registered version."""
        if entry.location.startswith(BUNDLED_PREFIX):
            directory = BUNDLED_DIR.parent / entry.location.removeprefix(BUNDLED_PREFIX)
            _, onnx = read_model_dir(directory)
            return await anyio.to_thread.run_sync(onnx.read_bytes)
        with storage_errors(f"The weights of model {entry.ref} are unavailable."):
            reader = await self.store.get(entry.location)
            return await reader.read()

    async def load(self, entry: RegisteredModel, *, threads: int = 0, device: str = "cpu") -> Model:
        """A Model ready to predict, for a registered version."""
        data = await self.read_bytes(entry)
        return await anyio.to_thread.run_sync(
            lambda: Model.from_bytes(data, entry.spec, threads=threads, device=device)
        )


@functools.cache
def bundled_embedding_dim(directory: Path, version: str) -> int | None:
    """The embedding width of a model shipped in the package (loaded once per process and
    version: every start registers the bundled model again)."""
    del version  # the cache key: a re-exported file is looked at again
    spec, onnx = read_model_dir(directory)
    return Model.from_bytes(onnx.read_bytes(), spec, threads=1).embedding_dim


def _entry(row: ModelRow) -> RegisteredModel:
    spec = ModelSpec(
        name=row.name,
        input=InputSpec.from_dict(row.input),
        labels=tuple(row.labels),
        output="probabilities" if row.output == "probabilities" else "logits",
    )
    return RegisteredModel(
        spec=spec,
        version=row.version,
        location=row.location,
        active=bool(row.active),
        created_at=row.created_at,
        embedding_dim=row.embedding_dim,
    )
