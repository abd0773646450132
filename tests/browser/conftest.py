"""Browser tests: a real `imgest serve` on loopback, Debian Chromium, screenshots kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, ViewportSize, expect

from tests.services.chromium import browser
from tests.services.imgest_server import Server

__all__ = ["browser"]

ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}

# Uploads are decoded and scored on a shared 2-core machine: give assertions time to come true.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `imgest serve` per test module (the tests share its corpus)."""
    with Server(tmp_path_factory.mktemp("ui-server")) as server:
        yield server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ui: where screenshots go (kept after the run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def open_page(browser: Browser, viewport: ViewportSize) -> Iterator[Page]:
    """A page in a fresh context of the given size; the context closes afterwards.

    Script errors, console errors (a Content-Security-Policy violation is one) and failed GETs
    (a missing stylesheet, script or image) fail the test; a refused upload is no page fault.
    """
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(30_000)
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console: {msg.text}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and response.request.method == "GET":
            errors.append(f"GET {response.url} -> {response.status}")

    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    page.on("console", on_console)
    page.on("response", on_response)
    try:
        yield page
    finally:
        context.close()
    assert not errors, "\n".join(errors)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop-sized page."""
    yield from open_page(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized page (390 x 844 CSS pixels, like a current iPhone)."""
    yield from open_page(browser, PHONE)
