"""The README's dashboard screenshots, from a real run: a private Mosquitto, `bioreactor run`
with the pH probe dropping out (an alarm to show), `bioreactor dashboard` with accounts, and
headless Chromium logged in as the operator alice, at 1280x800.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/img] [--settle-s 60]

It starts everything the way the browser tests do (tests/plugins/dashboard.py and browser.py,
imported, not copied) and stops it all on the way out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test plugins: one way to start the stack

from plugins.browser import chrome  # noqa: E402
from plugins.dashboard import ALICE, FAULT_ALARM, REACTOR, running_stack  # noqa: E402
from plugins.waiting import wait_until  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

WAIT_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--speed", default="60",
                        help="the controller's speed factor (default 60, as the tests run it)")
    parser.add_argument("--settle-s", type=float, default=60.0,
                        help="wall seconds of culture before the shots, for the trends to fill")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dashboard-shots-") as tmp_dir:
        tmp = Path(tmp_dir)
        with running_stack(tmp, speed=args.speed) as stack, chrome(tmp / "profile") as driver:
            base = stack.dashboard.url
            driver.get(base + "/login")
            form = driver.find_element(By.CSS_SELECTOR, "form#login")
            form.find_element(By.CSS_SELECTOR, 'input[name="username"]').send_keys(ALICE.name)
            form.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys(
                ALICE.password)
            form.submit()
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-field="user"]'),
                       WAIT_S, "the login", poll_s=0.2)
            time.sleep(args.settle_s)  # the culture runs: this is what the shots show
            driver.get(base + "/")
            wait_until(lambda: driver.find_elements(
                By.CSS_SELECTOR, f'[data-reactor="{REACTOR}"] [data-alarm="{FAULT_ALARM}"]'),
                WAIT_S, "the alarm on the overview", poll_s=0.2)
            driver.save_screenshot(str(args.out / "dashboard-overview.png"))
            driver.get(f"{base}/reactors/{REACTOR}")
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-trend] canvas"),
                       WAIT_S, "the trends drawn", poll_s=0.2)
            # Past the readings to the alarm (with its actions) and the trends below it.
            driver.execute_script("arguments[0].closest('section').scrollIntoView();",
                                  driver.find_element(By.CSS_SELECTOR, '[data-list="alarms"]'))
            driver.save_screenshot(str(args.out / "dashboard-reactor.png"))
    for name in ("dashboard-overview.png", "dashboard-reactor.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
