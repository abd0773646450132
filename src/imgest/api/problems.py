"""Every error leaves as RFC 9457 problem+json with a stable code; nothing leaks a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgest.errors import ImgestError, InvalidParameter, InvalidToken, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("request_too_large", "Request too large"),
}


def problem_response(
    error: ImgestError, request: Request | None = None, **extra: object
) -> JSONResponse:
    """The problem+json response for `error` (extension members in `extra`)."""
    body = error.problem(instance=request.url.path if request is not None else None)
    body.update(extra)
    if request is not None:
        count_problem(request, error.code)
    return JSONResponse(
        body,
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=problem_headers(error, request),
    )


def problem_headers(error: ImgestError, request: Request | None) -> dict[str, str]:
    """Retry-After on 429/503, the Bearer challenge (RFC 6750) on 401, close after 408."""
    headers: dict[str, str] = {}
    if error.status in (429, 503):
        settings = getattr(request.app.state, "settings", None) if request is not None else None
        headers["Retry-After"] = str(settings.retry_after_s if settings is not None else 5)
    if error.status == 408:
        headers["Connection"] = "close"  # the rest of a stalled body is not worth waiting for
    if isinstance(error, InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer realm="imgest", error="invalid_token"'
    elif isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="imgest"'
    return headers


def count_problem(request: Request, code: str) -> None:
    """Count a refusal by code in the app's metrics (when it has them)."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.problems.labels(code=code).inc()


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into problem+json."""

    @app.exception_handler(ImgestError)
    async def _imgest(request: Request, exc: ImgestError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.detail)
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return problem_response(InvalidParameter("; ".join(parts) or None), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, (f"http_{exc.status_code}", "HTTP error"))
        count_problem(request, code)
        body = {
            "type": f"https://imgest.dev/problems/{code}",
            "title": title,
            "status": exc.status_code,
            "code": code,
            "detail": str(exc.detail),
            "instance": request.url.path,
        }
        return JSONResponse(
            body,
            status_code=exc.status_code,
            media_type=PROBLEM_JSON,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            ImgestError("The server failed to process the request; it has been logged."),
            request,
        )
