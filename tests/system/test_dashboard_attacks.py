"""The dashboard as an attacker and a flaky network meet it, beyond what the issue lists.

- Anyone allowed to publish on the broker controls what the dashboard shows: reactor ids,
  alarm and event messages, reading names. Published markup must stay text in a real browser
  (server-side rendering escapes it; the live feed sets textContent only), on the first load
  and on live updates alike.
- The broker goes away and comes back: the page says so while it is away, and the dashboard
  carries on without a restart.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from plugins.dashboard import running_dashboard
from plugins.processes import LOOPBACK
from plugins.waiting import wait_until
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from controller.mqtt.topics import (
    Topics,
    alarm_payload,
    event_payload,
    status_payload,
    telemetry_payload,
)

WAIT_S = 60.0
MARK = "pwned"
HOSTILE = (f'<img src=x onerror="document.title=\'{MARK}\'">'
           f"<script>document.title='{MARK}'</script>")
REACTOR = "evil-1"


def _publish(port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    subprocess.run(["mosquitto_pub", "-h", LOOPBACK, "-p", str(port), "-q", "1", "-t", topic,
                    "-s", *(["-r"] if retain else [])], input=payload, check=True, timeout=30)


def _hostile_reactor(port: int, seq: int) -> None:
    topics = Topics(REACTOR)
    _publish(port, topics.status, status_payload("running", run_id="r1"), retain=True)
    _publish(port, topics.telemetry, telemetry_payload(
        seq=seq, wall_ts=0.0, t_s=60.0 * seq, run_id="r1",
        readings={"temperature_c": (37.0 + seq / 100, "degC", "good"),
                  HOSTILE[:40]: (1.0, HOSTILE[:16], "good")},
        setpoints={"temperature": 37.0}, outputs={"temperature": 10.0},
        modes={"temperature": "auto"}))
    _publish(port, topics.alarms, alarm_payload(
        wall_ts=0.0, t_s=60.0 * seq, name="temperature_high", severity="alarm", active=True,
        message=f"unack: {HOSTILE}"))
    _publish(port, topics.events, event_payload(wall_ts=0.0, t_s=60.0 * seq, kind="note",
                                                message=HOSTILE))


def test_published_markup_stays_text_in_a_real_browser(broker, tmp_path: Path,
                                                         browser: WebDriver) -> None:
    b = broker()
    with running_dashboard(b.url, tmp_path) as dashboard:
        _hostile_reactor(b.port, 1)
        browser.get(dashboard.url + "/")
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                 '[data-alarm="temperature_high"]'),
                   WAIT_S, "the hostile alarm on the overview")
        _hostile_reactor(b.port, 2)  # and again while the page is open: the live feed's turn
        wait_until(lambda: "37.02" in browser.find_element(
            By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] [data-reading="temperature"]').text,
            WAIT_S, "the live update")
        alarm = browser.find_element(By.CSS_SELECTOR, '[data-alarm="temperature_high"]')
        assert "<script>" in alarm.text and "onerror" in alarm.text  # shown, as text
        assert not alarm.find_elements(By.TAG_NAME, "img")
        browser.get(f"{dashboard.url}/reactors/{REACTOR}")
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-list="events"] li'),
                   WAIT_S, "the reactor page's events")
        events = browser.find_element(By.CSS_SELECTOR, '[data-list="events"]')
        assert "<script>" in events.text
        for page in (dashboard.url + "/", f"{dashboard.url}/reactors/{REACTOR}"):
            browser.get(page)
            wait_until(lambda: browser.execute_script("return document.readyState")
                       == "complete", WAIT_S, "the page to load")
            assert browser.title != MARK
            assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")


def test_a_broker_outage_is_shown_and_ridden_out(broker, tmp_path: Path) -> None:
    b = broker()
    with running_dashboard(b.url, tmp_path) as dashboard:
        def link() -> str:
            return httpx.get(dashboard.url + "/api/fleet", timeout=10).json()["link"]

        wait_until(lambda: link().startswith("connected"), WAIT_S, "the dashboard's link")
        b.stop()
        wait_until(lambda: link().startswith("broker unreachable"), WAIT_S,
                   "the outage on the page")
        b.start()
        wait_until(lambda: link().startswith("connected"), WAIT_S, "the link back")
        _hostile_reactor(b.port, 1)  # and messages flow again, without a restart
        wait_until(lambda: REACTOR in httpx.get(dashboard.url + "/", timeout=10).text,
                   WAIT_S, "a reactor published after the outage")
