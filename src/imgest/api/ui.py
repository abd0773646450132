"""The web UI: upload page, gallery and image page (server-rendered templates, a little plain JS).

The pages render the same JSON views the API answers with (`image_out`), so what the UI shows
is what `GET /v1/images...` returns. Uploads go from the browser to `POST /v1/images`, one
request per file (see static/upload.js).
"""

from __future__ import annotations

import functools
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from imgest import __version__
from imgest.api.assets import Assets
from imgest.api.images import Links, group_filter, image_id, image_out
from imgest.api.similar import similar_to
from imgest.catalog.repo import SORTS, ImageFilter, Sort
from imgest.config import Settings
from imgest.corpus import Corpus
from imgest.duplicates import GroupCache, group_of, sizes, together
from imgest.errors import ImgestError, InvalidParameter, NoEmbedding
from imgest.imaging.sniff import FORMATS
from imgest.labels import MAX_BULK_LABELS, MIN_SCORE, label_matches, suggestions
from imgest.params import day, day_end, day_start, percent

HERE = Path(__file__).parent
STATIC_PATH = "/ui/static"
PAGE_SIZE = 24
SIMILAR_SHOWN = 8  # similar images on an image page
# Formats a browser shows in an <img>; the others get a download link only.
BROWSER_FORMATS = frozenset({"jpeg", "png", "webp", "gif", "bmp", "avif"})
# Keys of the image JSON that the image page lays out itself; any other key is listed as is.
SHOWN_KEYS = frozenset(
    {
        "id",
        "format",
        "content_type",
        "width",
        "height",
        "frames",
        "bytes",
        "filename",
        "created_at",
        "fields",
        "tags",
        "original",
        "renditions",
        "predictions",
        "label",
    }
)
_MAX_QUERY = 200
SORT_NAMES: dict[Sort, str] = {
    "newest": "Newest first",
    "most_confident": "Most confident first",
    "least_confident": "Least confident first",
}

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


def human_bytes(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def human_time(stamp: str, zone: bool = True) -> str:
    """An ISO 8601 timestamp as 'YYYY-MM-DD HH:MM UTC' (without ' UTC' if not `zone`)."""
    moment = datetime.fromisoformat(stamp)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if zone else "%Y-%m-%d %H:%M")


templates.env.filters["bytes"] = human_bytes
templates.env.filters["when"] = human_time
templates.env.filters["percent"] = lambda score: f"{100 * float(score):.1f} %"


def content_security_policy(public_url: str) -> str:
    """Same-origin only (plus the origin of `public_url`, which the image links point at)."""
    origin = ""
    if public_url:
        parts = urlsplit(public_url)
        origin = f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; "
        f"img-src 'self' blob:{origin}; "
        "style-src 'self'; "
        "script-src 'self'; "
        f"connect-src 'self'{origin}; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render a template with the headers every UI page carries."""
    settings = _settings(request)
    base = {
        "static": STATIC_PATH,
        "version": __version__,
        "active": name.removesuffix(".html"),
        "min_score": MIN_SCORE,  # a top-1 below it is marked unsure ("?")
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers["Content-Security-Policy"] = content_security_policy(settings.public_url)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _error_page(request: Request, error: ImgestError) -> HTMLResponse:
    return _page(
        request,
        "error.html",
        {"title": error.title, "detail": error.detail, "status": error.status},
        status_code=error.status,
    )


def model_labels(request: Request) -> list[str]:
    """The active model's class labels, sorted (suggestions for the label inputs)."""
    labels: list[str] = request.app.state.batcher.model.labels
    return sorted(set(labels))


def label_suggestions(request: Request) -> list[tuple[str, str]]:
    """(label, class name) of the active model's vocabulary: ground truth to offer."""
    labels: list[str] = request.app.state.batcher.model.labels
    return _suggestions(tuple(labels))


@functools.lru_cache(maxsize=4)
def _suggestions(labels: tuple[str, ...]) -> list[tuple[str, str]]:
    return suggestions(labels)


def latest_top(image: dict[str, Any]) -> dict[str, Any] | None:
    """The top-1 of the image's latest prediction: what the gallery shows, sorts and filters
    by (the list API's confidence)."""
    predictions = image["predictions"]
    if not predictions or not predictions[-1]["top"]:
        return None
    top: dict[str, Any] = predictions[-1]["top"][0]
    return top


def thumbnail(image: dict[str, Any], pipeline: str) -> dict[str, Any] | None:
    """The rendition to show for an image: the configured pipeline's, else any."""
    renditions: dict[str, dict[str, Any]] = image["renditions"]
    if pipeline in renditions:
        return renditions[pipeline]
    return next(iter(renditions.values()), None)


@router.get("/", response_class=HTMLResponse)
async def upload_page(request: Request) -> HTMLResponse:
    """Upload several images with a description and tags; see each result."""
    settings = _settings(request)
    return _page(
        request,
        "upload.html",
        {
            "pipeline": settings.pipeline,
            "max_file_bytes": settings.max_file_bytes,
            "formats": [f.upper() for f in FORMATS],
        },
    )


@router.get("/gallery", response_class=HTMLResponse)
async def gallery_page(
    request: Request,
    label: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
    tag: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
    since: Annotated[str, Query(alias="from", max_length=_MAX_QUERY)] = "",
    until: Annotated[str, Query(alias="to", max_length=_MAX_QUERY)] = "",
    cursor: Annotated[str, Query(max_length=512)] = "",
    sort: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
    min_confidence: Annotated[str, Query(alias="min", max_length=_MAX_QUERY)] = "",
    max_confidence: Annotated[str, Query(alias="max", max_length=_MAX_QUERY)] = "",
    disagrees: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
    group: Annotated[str, Query(max_length=_MAX_QUERY)] = "",
) -> HTMLResponse:
    """Stored images, newest first or by confidence, filtered by a part of the top-1 label
    (any case: "cat" finds "tiger cat"), tag, upload day (UTC), confidence (percent),
    disagreement with the ground truth and near-duplicate group."""
    filters = {
        "label": label.strip(),
        "tag": tag.strip(),
        "from": since,
        "to": until,
        "sort": sort if sort != "newest" else "",
        "min": min_confidence.strip(),
        "max": max_confidence.strip(),
        "disagrees": "1" if disagrees else "",
        "group": group.strip().lower(),
    }
    cache: GroupCache = request.app.state.groups
    try:
        groups = await cache.current()
    except ImgestError as exc:  # the catalog, say, is unavailable
        return _error_page(request, exc)
    group_sizes = sizes(groups)
    context: dict[str, Any] = {
        "filters": filters,
        "labels": model_labels(request),
        "suggestions": label_suggestions(request),
        "sorts": SORT_NAMES,
        # The group controls show where there is a group of two or more images to look at.
        "groups_on": bool(group_sizes) or bool(filters["group"]),
        "max_bulk": MAX_BULK_LABELS,
        "filtering": any(v for k, v in filters.items() if k != "sort"),  # order is no filter
    }
    try:
        if filters["sort"] and filters["sort"] not in SORTS:
            raise InvalidParameter(f"Sort is one of {', '.join(SORTS)}.")
        order: Sort = next((s for s in SORTS if s == filters["sort"]), "newest")
        first = day(since, "From")
        last = day(until, "To")
        where = ImageFilter(
            label_contains=filters["label"] or None,
            tag=filters["tag"] or None,
            since=day_start(first) if first else None,
            until=day_end(last, "To") if last else None,
            min_confidence=percent(filters["min"], "Confidence from"),
            max_confidence=percent(filters["max"], "Confidence to"),
            disagrees=bool(filters["disagrees"]),
            ids=await group_filter(request, filters["group"] or None),
        )
        corpus: Corpus = request.app.state.corpus
        page = await corpus.list(limit=PAGE_SIZE, cursor=cursor or None, where=where, sort=order)
    except InvalidParameter as exc:
        return _page(request, "gallery.html", {**context, "items": [], "problem": exc}, 422)
    except ImgestError as exc:
        return _error_page(request, exc)
    links: Links = request.app.state.links
    pipeline = _settings(request).pipeline
    items = []
    # A near-duplicate group's images on this page side by side (at its first image's place)
    records = [page.items[n] for n in together([r.id for r in page.items], groups)]
    for record in records:
        image = image_out(record, links).model_dump(mode="json")
        top = latest_top(image)
        truth = image["label"]
        in_group = group_of(groups, image["id"])
        items.append(
            {
                "image": image,
                "thumb": thumbnail(image, pipeline),
                "top": top,
                "disagrees": bool(truth and top and not label_matches(truth, top["label"])),
                "group": in_group if in_group in group_sizes else None,
                "group_size": group_sizes.get(in_group, 1),
                # one of 8 hues per group, so two groups side by side are told apart
                "group_hue": zlib.crc32(in_group.encode()) % 8,
            }
        )
    query = {k: v for k, v in filters.items() if v}
    next_url = None
    if page.next_cursor:
        next_url = "/gallery?" + urlencode({**query, "cursor": page.next_cursor})
    first_url = "/gallery?" + urlencode(query) if cursor else None
    shown_group = None
    if filters["group"]:
        shown_group = {"id": filters["group"], "size": group_sizes.get(filters["group"], 1)}
    return _page(
        request,
        "gallery.html",
        {
            **context,
            "items": items,
            "next_url": next_url,
            "first_url": first_url,
            "shown_group": shown_group,
        },
    )


@router.get("/images/{image}", response_class=HTMLResponse)
async def image_page(request: Request, image: str) -> HTMLResponse:
    """One image: original, renditions, every prediction, fields, tags, ground truth, and the
    stored images most similar to it."""
    corpus: Corpus = request.app.state.corpus
    try:
        record = await corpus.get(image_id(image))
    except ImgestError as exc:
        return _error_page(request, exc)
    links: Links = request.app.state.links
    view = image_out(record, links).model_dump(mode="json")
    extra = {k: v for k, v in view.items() if k not in SHOWN_KEYS}
    pipeline = _settings(request).pipeline
    try:
        _, found = await similar_to(request, record.id, SIMILAR_SHOWN)
        similar = [
            {"id": m.id, "score": m.score, "thumb": links.rendition(m.id, pipeline)} for m in found
        ]
        no_similar = None
    except NoEmbedding as exc:  # stored before embeddings were recorded: say so, show the rest
        similar, no_similar = [], exc.detail
    return _page(
        request,
        "image.html",
        {
            "active": "gallery",  # an image page belongs to the gallery
            "image": view,
            "extra": extra,
            "previewable": view["format"] in BROWSER_FORMATS,
            "labels": model_labels(request),
            "similar": similar,
            "no_similar": no_similar,
        },
    )


def install(app: FastAPI) -> None:
    """Serve the UI pages and their static files on `app`."""
    app.include_router(router)
    app.mount(STATIC_PATH, Assets(directory=HERE / "static"), name="ui-static")
