"""Every error leaves as RFC 9457 problem+json with a stable code; nothing leaks a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgest.api.routes import methods_for
from imgest.errors import ImgestError, InvalidParameter, InvalidToken, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),  # e.g. a JSON body that does not parse
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
    """Register the handlers that turn exceptions into problem+json, and document them."""
    document(app)

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
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (methods := methods_for(app, request.url.path)):
            # Starlette's Allow names only the first route that matched the path; list them all.
            headers["Allow"] = ", ".join(methods)
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
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            ImgestError("The server failed to process the request; it has been logged."),
            request,
        )


def document(app: FastAPI) -> None:
    """Make the OpenAPI say what the handlers send: every 4xx/5xx is problem+json, a body
    that does not parse is a 400, and credentials are documented only when auth is on."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            auth_on = getattr(app.state, "settings", None) is not None and (
                app.state.settings.auth != "off"
            )
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if "requestBody" in operation:  # a body that does not parse is a 400
                        responses.setdefault("400", {"description": "Malformed request body."})
                    if not auth_on:  # this server asks for no credentials: say so
                        operation.pop("security", None)
                        for status in ("401", "403"):
                            responses.pop(status, None)
                    elif "security" in operation:
                        responses.setdefault("401", {"description": "No or an invalid API key."})
                        responses.setdefault("403", {"description": "The key lacks the scope."})
                    _problem_responses(responses)
            if not auth_on:
                schema.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem_responses(responses: dict[str, Any]) -> None:
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for status, response in responses.items():
        if status[:1] in ("4", "5"):
            response["content"] = {PROBLEM_JSON: problem}
            if status == "422":
                response["description"] = "The request or an image in it was refused."
