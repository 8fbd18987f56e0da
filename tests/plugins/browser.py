"""Headless Chromium for the dashboard's tests: a Selenium driver (`browser` fixture) and
`chromium --dump-dom` (`dump_dom`), both the system's browser (Debian's `chromium` and
`chromium-driver`), each with a fresh profile under the test's tmp dir.

Registered for every test by `pytest_plugins` in tests/conftest.py. On a failed test the
`browser` fixture leaves `failure.png` and `failure.html` (what the browser showed) in the test's
tmp dir and names them in the report.
"""
from __future__ import annotations

import html.parser
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW_PX = (1280, 800)
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
"""What works on this machine (no GPU, no user namespaces, no network beyond loopback)."""
PAGE_LOAD_TIMEOUT_S = 30.0


def _flags(profile_dir: Path, window_px: tuple[int, int]) -> list[str]:
    return [*CHROME_FLAGS, f"--user-data-dir={profile_dir}",
            f"--window-size={window_px[0]},{window_px[1]}"]


@contextmanager
def chrome(profile_dir: Path, window_px: tuple[int, int] = WINDOW_PX) -> Iterator[WebDriver]:
    """A Selenium 4 Chrome driving the system's chromium, its page `window_px` big; always
    quit, even on failure."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in _flags(profile_dir, window_px):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        _fit_viewport(driver, window_px)
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


def _fit_viewport(driver: WebDriver, window_px: tuple[int, int]) -> None:
    """Size the window so the page itself (and so a screenshot) is `window_px`: even headless,
    the window counts a toolbar's height the page does not get."""
    driver.set_window_size(*window_px)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    driver.set_window_size(2 * window_px[0] - inner[0], 2 * window_px[1] - inner[1])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so a fixture's teardown knows the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebDriver]:
    """A fresh headless Chrome at 1280x800; on failure its screenshot and page are saved."""
    with chrome(tmp_path / "chrome-profile") as driver:
        yield driver
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            _save_failure(driver, tmp_path, request.node)


def _save_failure(driver: WebDriver, tmp_path: Path, item: pytest.Item) -> None:
    """What the browser showed when the test failed (best effort: the browser may be gone)."""
    try:
        driver.save_screenshot(str(tmp_path / "failure.png"))
        (tmp_path / "failure.html").write_text(driver.page_source)
    except Exception as exc:
        item.add_report_section("teardown", "browser", f"could not save the page: {exc}")
        return
    item.add_report_section("teardown", "browser",
                            f"screenshot and page source: {tmp_path}/failure.png, failure.html")


def dump_dom(url: str, profile_dir: Path, *, wait_ms: int = 3000,
             timeout_s: float = 60.0) -> str:
    """`chromium --headless --dump-dom URL` as a user types it: the DOM after the page has had
    `wait_ms` of (virtual) time to run its scripts. A page whose live feed never goes quiet
    still ends: --timeout stops loading once `wait_ms` have passed."""
    proc = subprocess.run(
        [CHROMIUM, *_flags(profile_dir, WINDOW_PX), f"--timeout={wait_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise AssertionError(f"chromium --dump-dom {url} exited {proc.returncode}: "
                             f"{proc.stderr[-2000:]}")
    return proc.stdout


class _Texts(html.parser.HTMLParser):
    """The text of every element carrying `attr="value"`, from a DOM string."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})

    def __init__(self, attr: str, value: str) -> None:
        super().__init__()
        self.attr, self.value = attr, value
        self.open: list[list[str]] = []  # one text buffer per matching element still open
        self.depths: list[int] = []
        self.depth = 0
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.depth += 1
        if (self.attr, self.value) in attrs:
            self.open.append([])
            self.depths.append(self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.depths and self.depths[-1] == self.depth:
            self.depths.pop()
            self.found.append(" ".join("".join(self.open.pop()).split()))
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        for buffer in self.open:
            buffer.append(data)


def texts_with(dom: str, attr: str, value: str) -> list[str]:
    """The whitespace-normalised text of each element of `dom` with `attr="value"`."""
    parser = _Texts(attr, value)
    parser.feed(dom)
    parser.close()
    return parser.found
