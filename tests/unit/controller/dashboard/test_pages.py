"""The dashboard's pages and JSON from a FleetState fed with the controller's own payloads, in
process (no broker): rendering, the DOM hooks the browser tests use, the key readings, 404s,
read-only refusals, window validation and run ids that could name files outside --runs."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from plugins.dashboard import post_login

from controller.dashboard.app import DashboardOptions, create_app
from controller.dashboard.feed import Feed
from controller.dashboard.gate import Gate
from controller.dashboard.reactor_json import loop_reading
from controller.dashboard.run_files import RunFiles, valid_run_id
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import Topics, alarm_payload, status_payload, telemetry_payload

REACTOR = "r-1"
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _feed() -> Feed:
    feed = Feed(MqttSettings.from_url("mqtt://127.0.0.1:1"))
    topics = Topics(REACTOR)
    feed.fold(topics.status, status_payload("running", run_id="run1"), 0.0)
    feed.fold(topics.telemetry, telemetry_payload(
        seq=1, wall_ts=0.0, t_s=60.0, run_id="run1",
        readings={"temperature_c": (37.02, "°C", "good"), "do_pct_air": (24.9, "% air", "good"),
                  "do_pct_air_correction": (1.0, "% air", "good"),
                  "ph": (None, "pH", "bad"), "est_growth_rate_per_d": (0.5, "1/d", "good")},
        setpoints={"temperature": 37.0, "do": 25.0, "ph": 7.3},
        outputs={"temperature": 12.0}, modes={"temperature": "auto"},
        recipe={"state": "running", "phase": "seed"}), 0.0)
    feed.fold(topics.alarms, alarm_payload(wall_ts=0.0, t_s=60.0, name="ph_bad_quality",
                                           severity="alarm", active=True,
                                           message="unack: pH probe bad"), 0.0)
    return feed


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "secret.sqlite").write_text("not yours")
    gate = Gate(None, "127.0.0.1", False, now_s=lambda: 0.0)
    app = create_app(_feed(), gate, DashboardOptions(runs=RunFiles(runs)))
    with TestClient(app) as test_client:
        yield test_client


def test_the_overview_renders_each_reactor_with_its_key_readings_and_alarms(
        client: TestClient) -> None:
    page = client.get("/").text
    assert f'data-reactor="{REACTOR}"' in page
    assert re.search(r'data-reading="temperature" data-quality="good"[^>]*>37.02 °C<', page)
    assert re.search(r'data-reading="do" data-quality="good"[^>]*>24.90 % air<', page)
    assert re.search(r'data-reading="ph" data-quality="bad"[^>]*>– pH<', page)
    assert re.search(r'data-alarm="ph_bad_quality" data-priority="high" data-state="unack"',
                     page)
    assert "!! high" in page  # a symbol and a word, not colour alone
    assert '<span data-field="phase">seed</span>' in page
    assert re.search(r'data-field="age" data-age-s="[0-9.]+" data-stale="(true|false)"', page)
    assert "read-only: no accounts configured" in page


def test_the_reactor_page_has_every_hook_and_no_action_when_read_only(
        client: TestClient) -> None:
    page = client.get(f"/reactors/{REACTOR}").text
    for hook in ('data-trend="temperature"', 'data-list="events"', 'data-list="audit"',
                 'data-list="phases"', 'data-sensor="est_growth_rate_per_d"',
                 'data-alarm="ph_bad_quality"'):
        assert hook in page, hook
    assert "data-action=" not in page


def test_a_loops_reading_is_found_by_name_and_unit() -> None:
    view = _feed().state.reactors[REACTOR]
    assert loop_reading(view, "temperature") == "temperature_c"
    assert loop_reading(view, "do") == "do_pct_air"
    assert loop_reading(view, "ph") == "ph"
    assert loop_reading(view, "co2") is None


def test_json_and_errors(client: TestClient) -> None:
    body = client.get(f"/api/reactors/{REACTOR}", params={"trend": 1}).json()
    assert body["key_readings"]["temperature"]["value"] == 37.02
    assert body["trend"][0]["values"]["sp.temperature"] == 37.0
    assert client.get("/api/reactors/nope").status_code == 404
    page = client.get("/reactors/nope")
    assert page.status_code == 404 and "no reactor &#39;nope&#39;" in page.text
    bad = client.get(f"/api/reactors/{REACTOR}/history", params={"window_s": "soon"})
    assert bad.status_code == 400 and "window_s" in bad.json()["error"]
    # no run file for run1 in --runs: history says how to get one
    missing = client.get(f"/api/reactors/{REACTOR}/history")
    assert missing.status_code == 404 and "--runs" in missing.json()["error"]


def test_read_only_refuses_actions_and_logins(client: TestClient) -> None:
    action = client.post(f"/reactors/{REACTOR}/actions", data={"action": "ack_alarm"})
    assert action.status_code == 403
    assert client.post("/login", data={"username": "a", "password": "b"}).status_code == 403


@pytest.mark.parametrize("run_id", ["../secret", "..", "/etc/passwd", "a/b", "secret.sqlite",
                                    "", "x" * 65, "ü"])
def test_run_ids_that_are_not_run_ids_name_no_file(tmp_path: Path, run_id: str) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "secret.sqlite").write_text("")
    assert RunFiles(tmp_path / "runs").path(run_id) is None
    assert not valid_run_id(run_id)


def test_a_symlink_out_of_the_runs_folder_is_not_followed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "secret.sqlite").write_text("")
    (runs / "leak.sqlite").symlink_to(tmp_path / "secret.sqlite")
    files = RunFiles(runs)
    assert files.path("leak") is None


def test_only_historian_files_are_runs(tmp_path: Path) -> None:
    """replay_nonces.sqlite sits beside the runs; neither it nor a non-SQLite file is a run."""
    import sqlite3

    con = sqlite3.connect(tmp_path / "replay_nonces.sqlite")
    con.execute("CREATE TABLE nonces (nonce TEXT)")
    con.close()
    (tmp_path / "junk.sqlite").write_text("not a database")
    files = RunFiles(tmp_path)
    assert files.path("replay_nonces") is None and files.path("junk") is None
    assert files.run_ids() == []


def _accounts_app(tls: bool, bind_host: str) -> TestClient:
    from controller.dashboard.accounts import Account, DashboardConfig, Role
    from controller.dashboard.passwords import hash_password

    config = DashboardConfig(account=[Account(name="alice", key_hex="00" * 16,
                                              role=Role.OPERATOR,
                                              password_hash=hash_password("pw"))])
    gate = Gate(config, bind_host, tls, now_s=lambda: 0.0)
    app = create_app(_feed(), gate, DashboardOptions(runs=RunFiles(None)))
    return TestClient(app, base_url="https://testserver" if tls else "http://testserver",
                      follow_redirects=False)


def test_under_tls_the_cookie_is_secure_and_actions_are_offered() -> None:
    with _accounts_app(True, "0.0.0.0") as client:
        login = post_login(client, "alice", "pw")
        assert login.status_code == 303
        assert "secure" in login.headers["set-cookie"].lower()
        assert "strict-transport-security" in login.headers
        page = client.get(f"/reactors/{REACTOR}").text
        assert 'data-action="ack_alarm"' in page and 'data-action="shelve_alarm"' in page


def test_plain_http_off_loopback_offers_no_action_and_says_why() -> None:
    with _accounts_app(False, "0.0.0.0") as client:
        assert post_login(client, "alice", "pw").status_code == 303
        page = client.get(f"/reactors/{REACTOR}").text
        assert "data-action=" not in page and "operator actions are off" in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token  # the logout form's
        refused = client.post(f"/reactors/{REACTOR}/actions",
                              data={"action": "ack_alarm", "alarm": "ph_bad_quality",
                                    "reason": "x", "csrf_token": token.group(1)},
                              headers={"Accept": "application/json"})
        assert refused.status_code == 403 and "plain HTTP" in refused.json()["error"]


def test_each_listener_holds_a_set_of_changed_reactors_not_a_queue() -> None:
    feed = _feed()
    listener = feed.listen()
    assert listener.take() == {REACTOR}  # the first view of every known reactor
    topics = Topics(REACTOR)
    for seq in range(2, 1002):  # a thousand messages while the client is slow
        feed.fold(topics.telemetry, telemetry_payload(
            seq=seq, wall_ts=0.0, t_s=60.0 + seq, readings={"ph": (7.0, "pH", "good")},
            setpoints={"ph": 7.3}), float(seq))
    assert listener.wake.is_set()
    assert listener.take() == {REACTOR}  # one pending update: the latest view
    assert not listener.wake.is_set()
    feed.unlisten(listener)
    assert feed.listeners == 0


def test_too_many_listeners_are_refused() -> None:
    from controller.dashboard.feed import MAX_LISTENERS, TooManyListeners

    feed = _feed()
    for _ in range(MAX_LISTENERS):
        feed.listen()
    with pytest.raises(TooManyListeners):
        feed.listen()


def test_reactors_beyond_the_cap_are_counted_and_said_on_the_overview(tmp_path: Path) -> None:
    """A publisher may invent reactor ids: the dashboard keeps --max-reactors of them and says
    that others were left out (and how to see them), instead of dropping them silently."""
    feed = Feed(MqttSettings.from_url("mqtt://127.0.0.1:1"), max_reactors=2)
    for name in ("a", "b", "c"):
        feed.fold(Topics(name).status, status_payload("running", run_id=f"run-{name}"), 0.0)
    assert sorted(feed.state.reactors) == ["a", "b"]
    gate = Gate(None, "127.0.0.1", False, now_s=lambda: 0.0)
    app = create_app(feed, gate, DashboardOptions(runs=RunFiles(None)))
    with TestClient(app) as client:
        page = client.get("/").text
    assert 'data-reactor="c"' not in page
    assert re.search(r'data-field="rejected">.*too_many_reactors 1', page, re.S)
    assert "than the 2 this dashboard keeps: start it with a larger --max-reactors" in page
