"""Fixtures of the web view's tests: the replica with the fixed data set under uvicorn on
loopback, and headless Chromium (Debian's package) driven by Playwright.

Every page opened through :func:`open_page` is watched: a console error, an uncaught
exception, a failed request or an HTTP error answer fails the test that opened it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from replica.app import create_app
from replica.auth import READ_CHAIN, READ_READINGS
from replica.config import ReplicaConfig
from replica.storage.base import Storage, open_storage
from replica.ui.config import UiConfig
from tests.support import uidata
from tests.support.browser import ServedApp, launch
from tests.support.tokens import install_test_token

FULL_TOKEN = f"mct_7e57000000000011_{'a1' * 32}"
CHAIN_ONLY_TOKEN = f"mct_7e57000000000012_{'b2' * 32}"


@dataclass
class UiReplica:
    """The served replica, its data set, and tokens by what they may read."""

    served: ServedApp
    storage: Storage
    data: uidata.UiDataSet
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.served.url

    def api(self, path: str, token: str | None = None) -> Any:
        """GET a /v1 path as a script would (with the full token unless told)."""
        r = httpx.get(self.url + path, timeout=30,
                      headers={"Authorization": f"Bearer {token or self.tokens['full']}"})
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()


@pytest.fixture(scope="module")
def ui_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiReplica]:
    db = tmp_path_factory.mktemp("ui") / "replica.db"
    storage = open_storage(f"sqlite:///{db}", pool_size=4)
    data = uidata.build(storage, now_ms=time.time_ns() // 1_000_000)
    tokens = {
        "full": install_test_token(storage, (READ_CHAIN, READ_READINGS), "7e57000000000011",
                                   FULL_TOKEN),
        "chain": install_test_token(storage, (READ_CHAIN,), "7e57000000000012",
                                    CHAIN_ONLY_TOKEN),
    }
    cfg = ReplicaConfig(ui=UiConfig(behind_after_s=uidata.BEHIND_S,
                                    silent_after_s=uidata.SILENT_S))
    served = ServedApp(create_app(cfg, storage))
    yield UiReplica(served, storage, data, tokens)
    served.stop()
    storage.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One browser for tests/ui. Package scope: Playwright's sync API keeps an event loop
    running in this thread while it lives, which ``asyncio.run`` elsewhere refuses."""
    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@dataclass
class Watched:
    """Problems seen on a page: console errors, page errors, failed or refused requests."""

    problems: list[str] = field(default_factory=list)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


def watch(page: Page) -> Watched:
    w = Watched()
    page.on("console", lambda m: w.problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: w.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: w.problems.append(
        f"request failed: {r.url}: {r.failure}"))
    page.on("response", lambda r: w.problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    return w


def login(context: BrowserContext, base: str, token: str) -> None:
    """Log in through the form, as a user would."""
    page = context.new_page()
    page.goto(base + "/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/ui/overview")
    page.close()


def open_page(context: BrowserContext, url: str) -> tuple[Page, Watched]:
    """Open ``url``, wait until its script says it has drawn everything, and return it
    with what was watched. Fails if the page reports an error instead."""
    page = context.new_page()
    w = watch(page)
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=30_000)
    assert page.get_attribute("body", "data-ready") == "1", \
        page.text_content("#status") or w.problems
    return page, w


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path
