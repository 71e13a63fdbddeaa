"""Debian's Chromium, driven by Playwright, against the real server; one browser per module.

Never `playwright install` (it downloads a browser of its own): `make browser` installs Debian's
`chromium`. A missing browser skips these tests on a developer machine and fails them in CI (the
`CI` environment variable), as PostgreSQL does, so a green CI always means they ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.databases import IN_CI, sqlite_database
from tests.e2e.conftest import RunningServer, run_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

CHROMIUM = Path(os.environ.get("CHATBOTS_TEST_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium phones home (updates, sync, field trials);
# on a closed network those connections are refused many at a time and slow everything down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
_REPORT_PROBLEM = """
document.addEventListener('securitypolicyviolation', (event) =>
  window.__reportProblem(`CSP ${event.violatedDirective} blocked ${event.blockedURI}`));
"""


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests are required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test, so the tab fixture knows whether to screenshot."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`chatbots serve` over a fresh SQLite database, as in tests/e2e."""
    directory = tmp_path_factory.mktemp("browser")
    with sqlite_database(directory) as url, run_server(url, directory / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as error:
        _unavailable(f"Playwright is not installed ({error}); `make test` installs it")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing; `make browser` installs Debian's chromium")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """A page that can reach the test server only, and what went wrong on it.

    `off_origin` lists what the page tried to load from another origin (each request aborted);
    `problems` its console errors, uncaught exceptions and Content-Security-Policy violations,
    which the browser blocks before making any request, so routing alone would not see them.
    """

    origin: str
    page: Page = field(init=False)
    off_origin: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"} or f"{parts.scheme}://{parts.netloc}" == self.origin:
            route.continue_()
        else:
            self.off_origin.append(url)
            route.abort("blockedbyclient")

    def assert_self_contained(self) -> None:
        assert self.off_origin == [], "the page loaded from another origin"
        assert self.problems == []


@pytest.fixture
def tab(
    browser: Browser, server: RunningServer, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Tab]:
    """A fresh browser context per test; a screenshot and the page's HTML on failure."""
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    opened = Tab(server.base_url)
    context.route("**/*", opened.route)
    context.expose_binding("__reportProblem", lambda _source, text: opened.problems.append(text))
    context.add_init_script(_REPORT_PROBLEM)
    page = opened.page = context.new_page()
    page.on("pageerror", lambda error: opened.problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            opened.problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    try:
        yield opened
    finally:
        try:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                (tmp_path / "failure.html").write_text(page.content())
                print(f"the failing page: {tmp_path / 'failure.png'} and failure.html")
        finally:
            context.close()
