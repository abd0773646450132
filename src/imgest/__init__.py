"""imgest: photo ingest for image-recognition networks."""

from __future__ import annotations

__version__ = "0.1.0"
