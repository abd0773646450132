"""GET /metrics: the Prometheus text exposition (open, admin-only or off, by setting)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from imgest.api.auth import Credentials, authorize
from imgest.errors import NotFound
from imgest.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request, credentials: Credentials) -> Response:
    """Counters, histograms and live gauges for Prometheus."""
    mode = request.app.state.settings.metrics
    if mode == "off":
        raise NotFound("Metrics are turned off (IMGEST_METRICS=off).")
    if mode == "admin":
        await authorize(request, credentials, ("admin",))
    exported: Metrics = request.app.state.metrics
    # Rendering walks every series: off the event loop, so a scrape never stalls other requests.
    body = await anyio.to_thread.run_sync(exported.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
