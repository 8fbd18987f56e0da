"""The dashboard's server over HTTP (httpx, no browser): `bioreactor dashboard` in its own
process, a real Mosquitto and a controller running at --speed 60 (tests/plugins/dashboard.py).

Pages carry their values server-side, the live feed (SSE) delivers changing values, history
comes from the run's historian, exports are the run's records, and what must be refused is:
unknown ids (404), paths out of the runs folder, actions without an account, a session, a
CSRF token or the role.
"""
from __future__ import annotations

import csv
import io
import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pyarrow.parquet as pq
import pytest
from plugins.dashboard import (
    ALICE,
    FAULT_ALARM,
    REACTOR,
    VIC,
    Dashboard,
    Login,
    Stack,
    post_login,
    running_stack,
)
from plugins.processes import BIN, LOOPBACK
from plugins.waiting import wait_until

WAIT_S = 60.0
RUN_ID = "dashboard"
"""running_stack's run id: its historian is runs/dashboard.sqlite in the --runs folder."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("dashboard-server")) as running:
        yield running


@pytest.fixture
def open_client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.open_dashboard.url, timeout=30) as client:
        yield client


@contextmanager
def _login(stack: Stack, login: Login) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.dashboard.url, timeout=30) as client:
        response = post_login(client, login.name, login.password)
        assert response.status_code == 303, response.text
        yield client


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9A-Za-z_-]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _temperature(page: str) -> float | None:
    match = re.search(r'data-reading="temperature" data-quality="[a-z?]+"[^>]*>'
                      r'(-?\d+\.\d+) ', page)
    return float(match.group(1)) if match else None


def _reactor_known(client: httpx.Client) -> bool:
    fleet = client.get("/api/fleet").json()
    return any(r["id"] == REACTOR and r["readings"] for r in fleet["reactors"])


def test_the_overview_shows_the_reactor_with_a_temperature_rendered_by_the_server(
        stack: Stack, open_client: httpx.Client) -> None:
    def with_temperature() -> str | None:
        page = open_client.get("/").text
        return page if _temperature(page) is not None else None

    page = wait_until(with_temperature, WAIT_S, "the overview to show a temperature")
    assert f'data-reactor="{REACTOR}"' in page
    assert f'href="/reactors/{REACTOR}"' in page
    assert "read-only: no accounts configured" in page
    assert 30.0 < (_temperature(page) or 0) < 45.0
    response = open_client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page  # every script is a static file (the CSP forbids inline)


def test_the_live_feed_delivers_changing_values(stack: Stack, open_client: httpx.Client) -> None:
    wait_until(lambda: _reactor_known(open_client), WAIT_S, "the reactor's first telemetry")
    seen: list[dict] = []
    with open_client.stream("GET", f"/events?reactor={REACTOR}") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "reactor":
                seen.append(json.loads(line.removeprefix("data: ")))
                if len({r["seq"] for r in seen}) >= 3:
                    break
    assert {r["id"] for r in seen} == {REACTOR}
    seqs = [r["seq"] for r in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) >= 3
    assert len({r["t_s"] for r in seen}) >= 3
    assert all("temperature" in r["key_readings"] for r in seen)


def test_history_comes_from_the_historian(stack: Stack, open_client: httpx.Client) -> None:
    wait_until(lambda: _reactor_known(open_client), WAIT_S, "the reactor's first telemetry")

    def history() -> dict | None:
        response = open_client.get(f"/api/reactors/{REACTOR}/history", params={"window_s": "all"})
        body = response.json() if response.status_code == 200 else None
        return body if body and len(body["t_s"]) >= 10 else None

    body = wait_until(history, WAIT_S, "ten historian buckets")
    assert body["run_id"] == RUN_ID
    temperature = body["loops"]["temperature"]
    assert temperature["band"] and temperature["band"] > 0
    values = [v for v in temperature["measurement"] if v is not None]
    assert values and all(30 < v < 45 for v in values)
    assert len(temperature["setpoint"]) == len(body["t_s"]) == len(temperature["output"])
    one_hour = open_client.get(f"/api/reactors/{REACTOR}/history", params={"window_s": "3600"})
    assert one_hour.status_code == 200
    assert one_hour.json()["t_s"][0] >= body["span_s"][1] - 3600 - 1e-6 or \
        body["span_s"][1] - body["span_s"][0] < 3600
    bad = open_client.get(f"/api/reactors/{REACTOR}/history", params={"window_s": "-5"})
    assert bad.status_code == 400 and "window_s" in bad.json()["error"]


def test_exports_are_the_runs_records_as_csv_and_parquet(stack: Stack,
                                                          open_client: httpx.Client) -> None:
    wait_until(lambda: _reactor_known(open_client), WAIT_S, "the reactor's first telemetry")
    # The historian's writer creates the file's tables with its first commit, a moment later.
    wait_until(lambda: open_client.get(f"/runs/{RUN_ID}").status_code == 200, WAIT_S,
               "the run file")
    response = open_client.get(f"/runs/{RUN_ID}/export.csv")
    assert response.status_code == 200, response.text
    assert f'filename="{RUN_ID}.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows and {"reactor_id", "t_s", "temperature_c"} <= set(rows[0])
    assert {r["reactor_id"] for r in rows} == {REACTOR}
    assert 30 < float(rows[-1]["temperature_c"]) < 45
    response = open_client.get(f"/runs/{RUN_ID}/export.parquet")
    assert response.status_code == 200
    assert f'filename="{RUN_ID}.parquet"' in response.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column_names == list(rows[0])
    assert table.num_rows >= len(rows)  # the run went on between the two exports
    assert set(table.column("reactor_id").to_pylist()) == {REACTOR}
    # The other records too: the run's events (its start at least) as CSV and Parquet.
    events = open_client.get(f"/runs/{RUN_ID}/export.csv", params={"table": "events"})
    assert f'filename="{RUN_ID}-events.csv"' in events.headers["content-disposition"]
    event_rows = list(csv.DictReader(io.StringIO(events.text)))
    assert event_rows and set(event_rows[0]) == {"reactor_id", "t_s", "kind", "message",
                                                 "data_json"}
    audit = pq.read_table(io.BytesIO(open_client.get(
        f"/runs/{RUN_ID}/export.parquet", params={"table": "audit"}).content))
    assert "reactor_id" in audit.column_names
    bad = open_client.get(f"/runs/{RUN_ID}/export.csv", params={"table": "checkpoints"})
    assert bad.status_code == 400 and "allowed ticks, events" in bad.text


def test_the_run_page_links_the_report_and_the_report_is_written_on_demand(
        stack: Stack, open_client: httpx.Client) -> None:
    wait_until(lambda: open_client.get(f"/runs/{RUN_ID}").status_code == 200, WAIT_S,
               "the run file")
    page = open_client.get(f"/runs/{RUN_ID}")
    for link in ("report", "export.csv", "export.parquet", "export.csv?table=audit"):
        assert f'href="/runs/{RUN_ID}/{link}"' in page.text
    report = open_client.get(f"/runs/{RUN_ID}/report", follow_redirects=True)
    assert report.status_code == 200 and f"Run {RUN_ID}" in report.text
    assert open_client.get(f"/runs/{RUN_ID}/report/nothing.png").status_code == 404


@pytest.mark.parametrize("path", [
    "/runs/..%2F..%2Fetc%2Fpasswd/export.csv",
    "/runs/..%2Fdashboard/export.csv",
    "/runs/%2Fetc%2Fpasswd/export.parquet",
    "/runs/dashboard.sqlite/export.csv",
    "/runs/../../etc/passwd",
    f"/runs/{RUN_ID}/report/..%2F..%2F{RUN_ID}.sqlite",
    "/static/..%2F..%2Fdashboard%2Fapp.py",
])
def test_no_url_reaches_outside_the_runs_folder(stack: Stack, open_client: httpx.Client,
                                                path: str) -> None:
    response = open_client.get(path)
    assert response.status_code == 404, path
    assert "Traceback" not in response.text and "SQLite format" not in response.text


def test_unknown_reactors_and_runs_are_404_pages_not_tracebacks(
        stack: Stack, open_client: httpx.Client) -> None:
    page = open_client.get("/reactors/no-such-reactor")
    assert page.status_code == 404
    assert "no reactor &#39;no-such-reactor&#39;" in page.text and "Traceback" not in page.text
    api = open_client.get("/api/reactors/no-such-reactor")
    assert api.status_code == 404 and "no-such-reactor" in api.json()["error"]
    run = open_client.get("/runs/no-such-run")
    assert run.status_code == 404 and "no run &#39;no-such-run&#39;" in run.text


def test_the_open_dashboard_refuses_every_action(stack: Stack,
                                                 open_client: httpx.Client) -> None:
    wait_until(lambda: _reactor_known(open_client), WAIT_S, "the reactor's first telemetry")
    page = open_client.get(f"/reactors/{REACTOR}").text
    assert "data-action=" not in page and "csrf_token" not in page
    response = open_client.post(f"/reactors/{REACTOR}/actions",
                                data={"action": "ack_alarm", "alarm": FAULT_ALARM,
                                      "reason": "test"},
                                headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert "read-only" in response.json()["error"]


def test_with_accounts_pages_need_a_login_and_a_bad_password_is_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.dashboard.url, timeout=30) as client:
        assert client.get("/").headers["location"] == "/login"
        assert client.get("/api/fleet").status_code == 401
        assert client.get(f"/runs/{RUN_ID}/export.csv").status_code in (303, 401)
        refused = post_login(client, ALICE.name, "wrong")
        assert refused.status_code == 401
        assert 'data-field="login-error"' in refused.text
        assert "dashboard_session" not in refused.headers.get("set-cookie", "")
    with _login(stack, ALICE) as client:
        home = client.get("/")
        assert home.status_code == 200 and f"{ALICE.name} (operator)" in home.text


def test_a_login_without_the_login_pages_token_is_refused(stack: Stack) -> None:
    """Login CSRF: another site's form could log the browser in under the attacker's account
    (and the operator would act, signed, as the attacker). The token is a double-submit: the
    login page's cookie and its form field must match."""
    with httpx.Client(base_url=stack.dashboard.url, timeout=30) as client:
        forged = {"username": ALICE.name, "password": ALICE.password}
        assert client.post("/login", data=forged).status_code == 403
        client.get("/login")  # the cookie alone is not enough, nor a token of one's own
        refused = client.post("/login", data={**forged, "csrf_token": "x" * 43})
        assert refused.status_code == 403
        assert "dashboard_session" not in refused.headers.get("set-cookie", "")
        assert post_login(client, ALICE.name, ALICE.password).status_code == 303


def test_session_cookie_is_httponly_and_samesite_strict(stack: Stack) -> None:
    with httpx.Client(base_url=stack.dashboard.url, timeout=30) as client:
        response = post_login(client, ALICE.name, ALICE.password)
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "secure" not in cookie  # plain HTTP on loopback; TLS would add it


def test_a_viewer_sees_no_action_and_the_server_refuses_theirs(stack: Stack) -> None:
    with _login(stack, VIC) as client:
        wait_until(lambda: _reactor_known(client), WAIT_S, "the reactor's first telemetry")
        page = client.get(f"/reactors/{REACTOR}").text
        assert "data-action=" not in page
        assert "viewer: you may look, not act" in page
        response = client.post(f"/reactors/{REACTOR}/actions",
                               data={"action": "ack_alarm", "alarm": FAULT_ALARM,
                                     "reason": "test", "csrf_token": _csrf(page)},
                               headers={"Accept": "application/json"})
        assert response.status_code == 403


def test_an_operator_acts_only_with_the_csrf_token_and_gets_the_controllers_reply(
        stack: Stack) -> None:
    with _login(stack, ALICE) as client:
        def alarm_row() -> str | None:
            page = client.get(f"/reactors/{REACTOR}").text
            return page if f'data-alarm="{FAULT_ALARM}"' in page else None

        page = wait_until(alarm_row, WAIT_S, f"alarm {FAULT_ALARM} on the reactor page")
        assert 'data-action="ack_alarm"' in page and 'data-action="shelve_alarm"' in page
        form = {"action": "ack_alarm", "alarm": FAULT_ALARM, "reason": "seen on the dashboard",
                "duration_s": "1h"}
        json_accept = {"Accept": "application/json"}
        no_token = client.post(f"/reactors/{REACTOR}/actions", data=form, headers=json_accept)
        assert no_token.status_code == 403 and "CSRF" in no_token.json()["error"]
        wrong = client.post(f"/reactors/{REACTOR}/actions",
                            data={**form, "csrf_token": "x" * 43}, headers=json_accept)
        assert wrong.status_code == 403
        reply = client.post(f"/reactors/{REACTOR}/actions",
                            data={**form, "csrf_token": _csrf(page)}, headers=json_accept)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["ok"] is True and body["code"] == "applied", body
        # the HTML form's way: a redirect back to the page, which shows the reply
        posted = client.post(f"/reactors/{REACTOR}/actions",
                             data={**form, "csrf_token": _csrf(page)})
        assert posted.status_code == 303
        shown = client.get(posted.headers["location"]).text
        assert 'data-field="reply"' in shown
        # An operator may not take a supervisor's action: refused before anything is signed.
        forbidden = client.post(f"/reactors/{REACTOR}/actions", headers=json_accept, data={
            "action": "set_mode", "loop": "ph", "mode": "manual", "reason": "try",
            "csrf_token": _csrf(page)})
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
        # Shelve, from the same row's form: applied, and the row shows it shelved.
        shelved = client.post(f"/reactors/{REACTOR}/actions", headers=json_accept,
                              data={**form, "action": "shelve_alarm", "duration_s": "2h",
                                    "csrf_token": _csrf(page)})
        assert shelved.status_code == 200 and shelved.json()["code"] == "applied", shelved.text
        wait_until(lambda: re.search(rf'data-alarm="{FAULT_ALARM}"[^>]*data-state="shelved"',
                                     client.get(f"/reactors/{REACTOR}").text),
                   WAIT_S, "the alarm shown shelved")


def test_a_busy_port_is_one_line_and_exit_2(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([BIN / "bioreactor", "dashboard", "--mqtt",
                               "mqtt://127.0.0.1:1", "--http", f"{LOOPBACK}:{port}"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --http {LOOPBACK}:{port}: the port is in use"


def test_sigterm_stops_it_cleanly_with_open_live_feeds(stack: Stack, tmp_path) -> None:
    """SIGTERM as a service manager sends it: exit 0, no traceback, even with an SSE client
    connected (uvicorn cuts it after its grace period)."""
    dashboard = Dashboard(stack.broker.url, tmp_path).start()
    try:
        with httpx.Client(base_url=dashboard.url, timeout=30) as client, \
                client.stream("GET", "/events") as feed:
            assert feed.status_code == 200
            assert dashboard.proc is not None
            dashboard.proc.send_signal(signal.SIGTERM)
            assert dashboard.proc.wait(30) == 0
    finally:
        dashboard.stop()
    assert "Traceback" not in dashboard.stderr() and "error" not in dashboard.stderr().lower()
