"""GET /metrics: the Prometheus text exposition (admin-only, open or off, by setting).

Who may read it is the request guard's decision (`imgest.api.guard.access`); this route only
answers 404 when metrics are off.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from imgest.errors import NotFound
from imgest.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Counters, histograms and live gauges for Prometheus."""
    if request.app.state.settings.metrics == "off":
        raise NotFound("Metrics are turned off (IMGEST_METRICS=off).")
    exported: Metrics = request.app.state.metrics
    # Rendering walks every series: off the event loop, so a scrape never stalls other requests.
    body = await anyio.to_thread.run_sync(exported.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
