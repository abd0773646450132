"""Every error leaves as RFC 9457 problem+json with a stable code; nothing leaks a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgest.errors import ImgestError, InvalidParameter

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
    headers = {"Retry-After": "5"} if error.status == 503 else None
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


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
