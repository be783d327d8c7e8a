"""Fixtures of the Web UI's tests: a real headless Chromium (the distribution's, driven by
Playwright, never a downloaded browser) looking at a real UI server on a real broker.

- `browser` (this package): Chromium from /usr/bin/chromium (`make test` installs the package);
  without it the tests fail and say how to install it, never skip.
- `ui` (per test): the UI for the test's topic prefix, served on a free loopback port by
  `UiServer`, with its run index in the test's own SQLite file; `ui.url(path)`.
- `page` (per test): a fresh browser context and page; `shot(page, name)` saves a
  screenshot under tests/screenshots/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.config import KafkaConfig
from streams.settings import UiSettings
from streams.ui import UiServer
from tests.integration.workers import topics_for, worker_env, workers

__all__ = ["browser", "page", "shot", "ui", "worker_env", "workers"]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
CHROMIUM_FLAGS = [
    # this machine has no network beyond the registries: keep Chromium from calling home
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-gpu",
    "--no-sandbox",
]


def chromium_path() -> str:
    """The distribution's Chromium, or a failure that says how to get it."""
    for candidate in (os.environ.get("EVERFLOW_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "the UI tests need the distribution's Chromium: run `make system` (apt-get install"
        " chromium) or set EVERFLOW_CHROMIUM to its path"
    )


# Package scope: Playwright's synchronous API keeps an event loop running on the main thread
# while it is open, and the tests after this package (asyncio.run) need that thread free.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class RunningUi:
    config: KafkaConfig
    settings: UiSettings
    server: UiServer
    address: str

    def url(self, path: str = "/") -> str:
        return self.address + path


@pytest.fixture
def ui(kafka_bootstrap: str, topic_prefix: str) -> Iterator[RunningUi]:
    """The UI for this test's topics (created here); the run index is the default SQLite
    file under EVERFLOW_DATA_DIR, the one the test's workers write."""
    config = topics_for(kafka_bootstrap, topic_prefix, "default")
    settings = UiSettings(port=0)
    server = UiServer(config, settings)
    address = server.start()
    try:
        yield RunningUi(config, settings, server, address)
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            shot(tab, f"FAILED-{request.node.name}")
        context.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as tests/screenshots/<name>.png; returns the path."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    # keeps each phase's report on the test item, so `page` can shoot a failed test's page
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
