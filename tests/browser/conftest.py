"""Browser fixtures: Debian's Chromium driven by Playwright against a live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def browser(live_server: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """A fresh headless Chromium per test.

    Playwright's sync API keeps an asyncio loop running in this thread, and
    Django refuses ORM calls while one runs; the tests' own ORM calls (drain(),
    assertions) are ordinary blocking code, so the guard is lifted for the
    browser tests only. Started per test, after the live server and the
    database, so the browser is gone again before the database is flushed.
    """
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (make chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
            # Inside Playwright the test's ORM calls run in another context,
            # so on another connection than pytest-django's; left open, it
            # stops PostgreSQL from dropping the test database at the end.
            connections.close_all()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser)
    yield page
    page.context.close()


def new_page(browser: Browser, width: int = 1280, height: int = 800, **options: object) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, **options)  # type: ignore[arg-type]
    # Every wait is one of Playwright's auto-waits, bounded by this; nothing
    # sleeps for a fixed time.
    context.set_default_timeout(10_000)
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
