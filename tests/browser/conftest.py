"""Fixtures of the browser tests: a daemon, `stigmer ui`, a signed-in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from harness import Daemon, Ui, chromium, wait_for


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def ui(daemon: Daemon) -> Iterator[Ui]:
    u = Ui(daemon)
    yield u
    u.stop()


@pytest.fixture
def browser(tmp_path: Path, ui: Ui) -> Iterator[WebDriver]:
    """Chromium, signed in to `ui` (its token exchanged for the cookie)."""
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(ui.url)
        wait_for("the executions page", lambda: driver.current_url == f"{ui.base}/")
        yield driver
    finally:
        driver.quit()
