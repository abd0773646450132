"""Catalog queries of embeddings: what the similarity index loads, catches up with and checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from imgest.catalog.models import EmbeddingRow, ImageRow
from imgest.catalog.session import Database


@dataclass(frozen=True)
class StoredEmbedding:
    """One embedding row as the index needs it: its sequence number, image and vector bytes."""

    seq: int
    image_id: str
    dim: int
    vector: bytes


class Embeddings(Database):
    """Reads of the embeddings table (writes go with the image or the rescore results)."""

    def embeddings_since(
        self, model_version: str, after: int = 0, *, limit: int = 10_000
    ) -> list[StoredEmbedding]:
        """Embeddings by `model_version` recorded after sequence number `after`, oldest first
        (at most `limit`): a replica's index catches up with what others added."""
        query = (
            select(EmbeddingRow.id, EmbeddingRow.image_id, EmbeddingRow.dim, EmbeddingRow.vector)
            .where(EmbeddingRow.model_version == model_version, EmbeddingRow.id > after)
            .order_by(EmbeddingRow.id)
            .limit(limit)
        )
        with self.reading() as session:
            return [StoredEmbedding(*row) for row in session.execute(query)]

    def embedding_of(self, image_id: str, model_version: str) -> StoredEmbedding | None:
        """The image's embedding by `model_version`, or None."""
        query = select(
            EmbeddingRow.id, EmbeddingRow.image_id, EmbeddingRow.dim, EmbeddingRow.vector
        ).where(EmbeddingRow.image_id == image_id, EmbeddingRow.model_version == model_version)
        with self.reading() as session:
            row = session.execute(query).first()
        return None if row is None else StoredEmbedding(*row)

    def embedding_count(self, model_version: str, upto: int) -> int:
        """How many embeddings by `model_version` with sequence number <= `upto` the catalog
        holds: fewer than a reader saw up to there means some were deleted since."""
        query = select(func.count(EmbeddingRow.id)).where(
            EmbeddingRow.model_version == model_version, EmbeddingRow.id <= upto
        )
        with self.reading() as session:
            return int(session.execute(query).scalar_one())

    def stored_ids(self, image_ids: Sequence[str]) -> set[str]:
        """Those of `image_ids` still in the catalog (an index may hold ones deleted since)."""
        if not image_ids:
            return set()
        query = select(ImageRow.id).where(ImageRow.id.in_(list(image_ids)))
        with self.reading() as session:
            return set(session.execute(query).scalars())
