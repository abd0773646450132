"""Browser tests: a real `imgest serve` on loopback, Debian Chromium, screenshots kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize

from tests.services.chromium import browser
from tests.services.imgest_server import Server

__all__ = ["browser"]

ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `imgest serve` per test module (the tests share its corpus)."""
    server = Server(tmp_path_factory.mktemp("ui-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ui: where screenshots go (kept after the run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def open_page(browser: Browser, viewport: ViewportSize) -> Iterator[Page]:
    """A page in a fresh context of the given size; the context closes afterwards."""
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop-sized page."""
    yield from open_page(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized page (390 x 844 CSS pixels, like a current iPhone)."""
    yield from open_page(browser, PHONE)
