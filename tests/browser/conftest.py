"""Browser tests: Playwright driving Debian's chromium against a real uvicorn server on a free
port, over a real database (the ``db`` fixture's). ``.ci/run`` installs chromium; on a machine
without it these tests are skipped with the reason (``apt-get install chromium``).

Screenshots are kept as test artifacts in ``var/test-artifacts/screenshots/`` (one per step that
calls :func:`shot`), so a reviewer can see what the browser saw.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dianfei.core.clock import Clock
from dianfei.db.engine import Database

ARTIFACTS = Path(os.environ.get("DIANFEI_TEST_ARTIFACTS", "var/test-artifacts")) / "screenshots"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


class LiveServer:
    """uvicorn in a thread of the test process, serving ``create_app(db, clock)``."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        import uvicorn

        from dianfei.web.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(db, clock), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(200):  # the server binds within a second or two, even on a loaded CI
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    pg.test_name = request.node.name
    yield pg
    context.close()


@pytest.fixture
def phone(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A collector's or customer's phone: a narrow touch screen."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844},
                                  is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    pg.test_name = request.node.name
    yield pg
    context.close()


def shot(page: Any, step: str) -> Path:
    """Keep a screenshot of the page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{page.test_name}-{step}.png"
    page.screenshot(path=str(out), full_page=True)
    return out


def sign_in(page: Any, base: str, user: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
