"""Embeddings between memory and the catalog: L2-normalised float32 here, float16 bytes there."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt

from imgest.catalog.records import EmbeddingRecord
from imgest.scoring.model import normalized

STORED = np.dtype("<f2")  # little-endian float16: 2 bytes a value, whatever the machine


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    """One vector, normalised, as the catalog stores it (float16)."""
    return normalized(vector).astype(STORED).tobytes()


def from_bytes(data: bytes, dim: int) -> npt.NDArray[np.float32]:
    """A stored vector back as a normalised float32 array; ValueError if it is not `dim` long."""
    values = np.frombuffer(data, dtype=STORED)
    if values.shape != (dim,):
        raise ValueError(f"a stored embedding of {values.size} values, expected {dim}")
    return normalized(values.astype(np.float32))


def embedding_record(
    vector: npt.NDArray[np.float32],
    *,
    model: str,
    model_version: str,
    pipeline: str,
    pipeline_version: str,
    created_at: datetime,
) -> EmbeddingRecord:
    """The catalog record of one image's embedding."""
    return EmbeddingRecord(
        model=model,
        model_version=model_version,
        pipeline=pipeline,
        pipeline_version=pipeline_version,
        dim=int(vector.shape[0]),
        vector=to_bytes(vector),
        created_at=created_at,
    )
