"""Tests of imgest.storage: the shared BlobStore contract and each backend."""
