"""The corpus fixtures of tests/jobs, for the write-path tests (test_once.py)."""

from tests.jobs.conftest import make_corpus, model, photo_files

__all__ = ["make_corpus", "model", "photo_files"]
