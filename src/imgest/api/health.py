"""Liveness and readiness probes."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imgest.api.auth import holds
from imgest.api.schemas import Health, Ready
from imgest.catalog.repo import Catalog
from imgest.errors import ImgestError
from imgest.scoring.scorers import Scorers
from imgest.storage.base import BlobNotFoundError, BlobStore

router = APIRouter(tags=["health"])

_PROBE_PATH = "healthz/probe"


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(request: Request) -> JSONResponse:
    """Storage, catalog and model all answer; 503 names the ones that don't."""
    state = request.app.state
    checks = {
        "storage": await _storage(state.store),
        "catalog": await _catalog(state.catalog),
        "model": _model(state.scorers),
    }
    ok = all(v == "ok" for v in checks.values())
    body = Ready(status="ok" if ok else "unavailable", checks=checks)
    if _shows_counters(request):
        body.counters = _counters(state)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503)


def _shows_counters(request: Request) -> bool:
    # The probe itself stays open (orchestrators send no key); the counters are the
    # readyz_counters setting's choice (docs/security.md).
    mode = request.app.state.settings.readyz_counters
    return mode == "open" or (mode == "admin" and holds(request, "admin"))


async def _storage(store: BlobStore) -> str:
    try:
        await store.head(_PROBE_PATH)
    except BlobNotFoundError:
        return "ok"  # reachable: it answered that the probe path is absent
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _catalog(catalog: Catalog) -> str:
    try:
        await anyio.to_thread.run_sync(catalog.ping)
    except ImgestError as exc:
        return f"unavailable: {exc.code}"
    return "ok"


def _counters(state: Any) -> dict[str, int]:
    counters = dataclasses.asdict(state.ingest.counters)
    counters["idempotent_replays"] = state.idempotency.replays
    return counters


def _model(scorers: Scorers) -> str:
    return "ok" if scorers.running else "unavailable: not loaded"
