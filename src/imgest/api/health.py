"""Liveness and readiness probes."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imgest.api.schemas import Health
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


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """Storage, catalog and model all answer; 503 names the ones that don't."""
    state = request.app.state
    checks = {
        "storage": await _storage(state.store),
        "catalog": await _catalog(state.catalog),
        "model": _model(state.scorers),
    }
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


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


def _model(scorers: Scorers) -> str:
    return "ok" if scorers.running else "unavailable: not loaded"
