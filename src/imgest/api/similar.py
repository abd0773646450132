"""Similar images: GET /v1/images/{id}/similar and POST /v1/similar (search by a query image)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from imgest.api.images import image_id
from imgest.api.multipart import openapi_body
from imgest.api.problems import PROBLEM_JSON
from imgest.api.schemas import Problem, SimilarOut, SimilarPage
from imgest.api.upload import admitted_form
from imgest.catalog.repo import Catalog
from imgest.corpus import Corpus
from imgest.errors import NoEmbedding, TooManyFiles
from imgest.ingest import IngestService
from imgest.scoring.model import Model
from imgest.similarity.live import Match, SimilarImages
from imgest.similarity.vectors import from_bytes

router = APIRouter(tags=["similar"])

MAX_K = 100
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many similar images, at most.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "No such image."},
    409: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "no_embedding: the image has no embedding by the active model yet "
        "(`imgest rescore` fills them), or the active model gives none.",
    },
    422: {"model": Problem, "content": {PROBLEM_JSON: {}}},
    503: {"model": Problem, "content": {PROBLEM_JSON: {}}},
}

_QUERY_BODY = openapi_body(
    {"file": {"type": "string", "format": "binary", "description": "One query image (not stored)."}}
)


def page(model: Model, found: list[Match]) -> SimilarPage:
    """The answer of a similarity search."""
    return SimilarPage(
        model=model.name,
        model_version=model.version,
        items=[SimilarOut(id=m.id, score=m.score) for m in found],
    )


async def active_model(request: Request) -> Model:
    """The model uploads are scored with now (its embeddings are the ones indexed)."""
    service: IngestService = request.app.state.ingest
    return (await service.scorer()).model


@router.get("/v1/images/{image}/similar", response_model=SimilarPage, responses=_ERRORS)
async def similar_to_image(request: Request, image: str, k: K = 10) -> SimilarPage:
    """The `k` stored images most similar to this one (cosine of the active model's
    embeddings), best first, the image itself left out."""
    image = image_id(image)
    corpus: Corpus = request.app.state.corpus
    await corpus.get(image)  # 404 for an unknown id
    model, found = await similar_to(request, image, k)
    return page(model, found)


async def similar_to(request: Request, image: str, k: int) -> tuple[Model, list[Match]]:
    """The active model and the `k` stored images most similar to stored image `image`;
    NoEmbedding when it has no embedding by that model (or the model gives none)."""
    state = request.app.state
    model = await active_model(request)
    if model.embedding_dim is None:
        raise NoEmbedding(f"Model {model.name} has no embedding output: it cannot compare images.")
    catalog: Catalog = state.catalog
    stored = await anyio.to_thread.run_sync(catalog.embedding_of, image, model.version)
    if stored is None:
        raise NoEmbedding(
            f"Image {image} has no embedding by {model.name}@{model.version[:12]} yet; "
            "`imgest rescore` records them for images stored before."
        )
    similar: SimilarImages = state.similar
    query = from_bytes(stored.vector, stored.dim)
    return model, await similar.search(model, query, k, exclude=(image,))


@router.post(
    "/v1/similar",
    response_model=SimilarPage,
    openapi_extra={"requestBody": _QUERY_BODY},
    responses={
        **_ERRORS,
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        413: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        415: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        429: {"model": Problem, "content": {PROBLEM_JSON: {}}},
    },
)
async def similar_to_upload(request: Request, k: K = 10) -> SimilarPage:
    """The `k` stored images most similar to an uploaded query image (multipart/form-data,
    one file part), which is decoded and scored like an upload, under the same limits and
    upload slots, but not stored."""
    state = request.app.state
    service: IngestService = state.ingest
    scorer = await service.scorer()
    async with admitted_form(request) as form:
        if len(form.files) > 1:
            raise TooManyFiles("Send one query image per request.")
        query = await service.embed(form.files[0], scorer)
        form.files.clear()
    similar: SimilarImages = state.similar
    return page(scorer.model, await similar.search(scorer.model, query, k))
