"""The dashboard as an operator meets it: `bioreactor dashboard` in its own process, a real
Mosquitto, a controller running at --speed 60 with a fault injected, and headless Chromium
(Selenium, and `chromium --dump-dom` as the issue's Done-when types it).

One broker and one controller run are shared by the module (starting them is most of its wall
time); each test has its own fresh browser profile, so no login leaks between tests. Two
dashboards watch the same broker: one open and read-only (no CONFIG), one with accounts.
"""
from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins.browser import dump_dom, texts_with
from plugins.dashboard import (
    ALICE,
    FAULT_ALARM,
    REACTOR,
    VIC,
    Dashboard,
    Login,
    Stack,
    running_dashboard,
    running_stack,
)
from plugins.waiting import wait_until
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from controller.operator.audit import read_audit

ALARM = FAULT_ALARM
"""Raised by the injected fault, standing for the rest of the run."""
WAIT_S = 60.0
"""Bound on every wait: generous for a loaded 2-core machine; an idle one takes seconds."""
POLL_S = 0.2
"""Between looks at the browser (each look is a round trip to chromedriver)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("dashboard-stack")) as running:
        yield running


def _temperature(text: str) -> float | None:
    """The number in a reading's text such as `37.02 °C`, None when it shows none."""
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(match.group()) if match else None


def _dumped_temperature(url: str, profile: Path) -> float | None:
    dom = dump_dom(url, profile)
    if REACTOR not in " ".join(texts_with(dom, "data-reactor", REACTOR)) + dom:
        return None
    readings = texts_with(dom, "data-reading", "temperature")
    return _temperature(readings[0]) if readings else None


def test_dump_dom_of_the_open_overview_shows_the_reactor_and_a_live_temperature(
    stack: Stack, tmp_path: Path
) -> None:
    """The Done-when: `chromium --headless --dump-dom /` of a read-only dashboard shows the
    reactor and a live temperature, and two loads a few simulated minutes apart differ."""
    url = stack.open_dashboard.url + "/"
    first = wait_until(lambda: _dumped_temperature(url, tmp_path / "p1"), WAIT_S,
                       "a temperature in the dumped overview", poll_s=POLL_S)
    assert 30.0 < first < 45.0, first
    dom = dump_dom(url, tmp_path / "p2")
    assert texts_with(dom, "data-reactor", REACTOR), "no element for the reactor"
    assert "read-only: no accounts configured" in dom
    page = dump_dom(f"{stack.open_dashboard.url}/reactors/{REACTOR}", tmp_path / "p3")
    assert texts_with(page, "data-reading", "temperature"), "the reactor page shows no reading"
    assert "data-action=" not in page, "an open dashboard offers an action"
    wait_until(lambda: (t := _dumped_temperature(url, tmp_path / "p3")) is not None
               and t != first, WAIT_S, f"a temperature other than {first}", poll_s=POLL_S)


def _reading(driver: WebDriver, name: str) -> str:
    found = driver.find_elements(
        By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] [data-reading="{name}"]')
    return found[0].text if found else ""


def test_the_overview_updates_live_without_a_reload(stack: Stack, browser: WebDriver) -> None:
    browser.get(stack.open_dashboard.url + "/")
    first = wait_until(lambda: _temperature(_reading(browser, "temperature")), WAIT_S,
                       "the overview's temperature", poll_s=POLL_S)
    browser.execute_script("window.__sameDocument = true;")  # gone if the page reloads
    assert browser.find_element(By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] a'
                                ).get_attribute("href").endswith(f"/reactors/{REACTOR}")
    for field in ("state", "age", "phase"):
        assert browser.find_elements(
            By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] [data-field="{field}"]'), field
    wait_until(lambda: _temperature(_reading(browser, "temperature")) not in (None, first),
               WAIT_S, f"the temperature to change from {first} on the page", poll_s=POLL_S)
    assert browser.execute_script("return window.__sameDocument === true;")
    quality = browser.find_element(
        By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] [data-reading="temperature"]'
    ).get_attribute("data-quality")
    assert quality, "the reading carries no data-quality"


def _log_in(driver: WebDriver, dashboard: Dashboard, login: Login, password: str) -> None:
    driver.get(dashboard.url + "/login")
    form = driver.find_element(By.CSS_SELECTOR, "form#login")
    form.find_element(By.CSS_SELECTOR, 'input[name="username"]').send_keys(login.name)
    form.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys(password)
    form.submit()


def _user_shown(driver: WebDriver) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, '[data-field="user"]')
    return found[0].text if found else ""


def _alarm_row(driver: WebDriver) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR,
                                 f'[data-reactor="{REACTOR}"] [data-alarm="{ALARM}"]')
    return found[0] if found else None


def _audit(db: Path) -> list[dict]:
    """The run's audit trail so far (the controller may be writing: retry on a busy file)."""
    try:
        return read_audit(db)
    except (FileNotFoundError, sqlite3.OperationalError):
        return []


def test_an_alarm_from_a_fault_is_acknowledged_from_the_page_and_audited(
    stack: Stack, browser: WebDriver
) -> None:
    _log_in(browser, stack.dashboard, ALICE, ALICE.password)
    wait_until(lambda: "alice" in _user_shown(browser), WAIT_S, "alice logged in",
               poll_s=POLL_S)
    assert "operator" in _user_shown(browser)
    browser.get(f"{stack.dashboard.url}/reactors/{REACTOR}")
    row = wait_until(lambda: _alarm_row(browser), WAIT_S, f"the {ALARM} alarm on the page",
                     poll_s=POLL_S)
    assert row.get_attribute("data-priority") == "high"
    assert row.get_attribute("data-state") == "unack"
    assert "high" in row.text and "unack" in row.text, "shown by colour alone"
    for hook in ('[data-trend="temperature"]', '[data-list="events"]', '[data-list="audit"]',
                 '[data-list="phases"]'):
        assert browser.find_elements(By.CSS_SELECTOR, hook), hook

    row.find_element(By.CSS_SELECTOR, 'input[name="reason"]').send_keys("seen in the browser")
    row.find_element(By.CSS_SELECTOR, 'button[data-action="ack_alarm"]').click()

    def reply() -> WebElement | None:
        found = browser.find_elements(By.CSS_SELECTOR, '[data-field="reply"][data-ok]')
        return found[0] if found else None

    shown = wait_until(reply, WAIT_S, "the controller's reply on the page", poll_s=POLL_S)
    assert shown.get_attribute("data-ok") == "true", shown.text
    assert "applied" in shown.text
    wait_until(lambda: (r := _alarm_row(browser)) is not None
               and r.get_attribute("data-state") == "acked", WAIT_S,
               f"{ALARM} shown acknowledged", poll_s=POLL_S)
    acks = wait_until(lambda: [r for r in _audit(stack.db) if r["action"] == "ack_alarm"],
                      WAIT_S, "the ack in the controller's audit trail", poll_s=POLL_S)
    assert [(r["operator"], r["outcome"], r["reason"]) for r in acks] == [
        ("alice", "applied", "seen in the browser")]


def test_a_viewer_sees_no_actions_and_a_crafted_post_is_refused(
    stack: Stack, browser: WebDriver
) -> None:
    _log_in(browser, stack.dashboard, VIC, VIC.password)
    wait_until(lambda: "vic" in _user_shown(browser), WAIT_S, "vic logged in", poll_s=POLL_S)
    assert "viewer" in _user_shown(browser)
    browser.get(f"{stack.dashboard.url}/reactors/{REACTOR}")
    wait_until(lambda: _alarm_row(browser), WAIT_S, f"the {ALARM} alarm on the page",
               poll_s=POLL_S)
    assert browser.find_elements(By.CSS_SELECTOR, "[data-action]") == []
    assert browser.find_elements(By.CSS_SELECTOR, 'button[data-action], form[action$="/actions"]'
                                 ) == []
    token = browser.execute_script(
        "const el = document.querySelector("
        "'input[name=\"csrf_token\"], meta[name=\"csrf-token\"]');"
        "return el && (el.value || el.content);")
    assert token, "no CSRF token on the viewer's page (the logout form carries one)"
    # The POST an action form would make, from the same page with vic's session cookie.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const body = new URLSearchParams({action: 'ack_alarm', alarm: arguments[1],"
        " reason: 'crafted', csrf_token: arguments[0]});"
        "fetch(arguments[2], {method: 'POST', body, credentials: 'same-origin',"
        " headers: {Accept: 'application/json'}})"
        ".then(r => done(r.status), e => done(String(e)));",
        token, ALARM, f"/reactors/{REACTOR}/actions")
    assert status == 403
    # Refused before signing: the dashboard answers after the controller would have replied.
    assert [r for r in _audit(stack.db) if r["operator"] == "vic"] == []


def test_a_bad_password_is_refused_and_no_session_is_set(
    stack: Stack, browser: WebDriver
) -> None:
    _log_in(browser, stack.dashboard, ALICE, "not-" + secrets.token_hex(4))
    error = wait_until(
        lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, '[data-field="login-error"]')
                 if e.is_displayed() and e.text.strip()],
        WAIT_S, "the login error", poll_s=POLL_S)
    assert error
    assert browser.find_elements(By.CSS_SELECTOR, '[data-field="user"]') == [] or \
        "alice" not in _user_shown(browser)
    assert [c["name"] for c in browser.get_cookies() if "session" in c["name"].lower()] == []
    browser.get(stack.dashboard.url + "/")
    assert browser.find_elements(By.CSS_SELECTOR, "form#login"), "a page served without login"


def test_a_dashboard_started_after_the_alarm_shows_it_from_the_retained_summary(
    stack: Stack, browser: WebDriver, tmp_path: Path
) -> None:
    """Alarm messages are a stream: a dashboard opened after the alarm was raised (a night
    shift's laptop) finds it standing in the reactor's retained alarm summary, with no run
    file at hand (no --runs); its live trends draw the loop's band all the same."""
    browser.get(stack.open_dashboard.url + "/")
    wait_until(lambda: _alarm_row(browser), WAIT_S, f"{ALARM} on the first dashboard",
               poll_s=POLL_S)
    with running_dashboard(stack.broker.url, tmp_path) as late:
        browser.get(late.url + "/")
        row = wait_until(lambda: _alarm_row(browser), WAIT_S,
                         f"{ALARM} on the dashboard started after it", poll_s=POLL_S)
        assert row.get_attribute("data-priority") == "high"
        assert row.get_attribute("data-state") in ("unack", "acked")  # acked if test 3 ran
        # Without the run file its trends are live only; the band comes from the loop's
        # retained read-only setting (the default config's temperature band: 0.1 degC).
        browser.get(f"{late.url}/reactors/{REACTOR}")
        wait_until(lambda: [e.get_attribute("data-band") for e in browser.find_elements(
            By.CSS_SELECTOR, '[data-trend="temperature"]')] == ["0.1"], WAIT_S,
            "the live temperature trend drawn with its band", poll_s=POLL_S)
