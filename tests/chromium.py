"""Headless Chromium for the report tests: Debian's `chromium` (scripts/setup.sh installs it),
driven through Playwright, with the network off. Without Chromium these tests fail, saying so.

The fixtures are imported by the conftest of each folder whose tests open pages."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")


@dataclass
class OpenedPage:
    """A page as a person sees it, and everything the browser said or asked for while opening it."""

    page: object
    console: list[str] = field(default_factory=list)  # errors and warnings, with their text
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")  # kept in the test's tmp dir (pytest -s shows it)
        return path

    def assert_clean(self, path: Path) -> None:
        """No console error or warning, and nothing asked for but the file itself."""
        assert self.console == []
        assert self.requests == [path.resolve().as_uri()]


@pytest.fixture(scope="session")
def chromium():
    executable = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if executable is None:
        pytest.fail("Chromium is not installed: run scripts/setup.sh (Debian package `chromium`)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the suite runs as root in CI, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium):
    contexts = []

    def opener(path: Path, width: int = 1300) -> OpenedPage:
        context = chromium.new_context(offline=True, viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        opened = OpenedPage(page)
        page.on("console", lambda m: opened.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: opened.console.append(f"pageerror: {e}"))
        page.on("request", lambda r: opened.requests.append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        return opened

    yield opener
    for context in contexts:
        context.close()
