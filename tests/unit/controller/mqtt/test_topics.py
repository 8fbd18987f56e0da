"""Topic scheme, payload builders, and the broker URL parser."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugins.configs import REPO

from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import (
    LOST_PAYLOAD,
    SEVERITIES,
    SEVERITY_OF_PRIORITY,
    ReadingValue,
    Topics,
    alarm_payload,
    event_payload,
    iso_utc,
    parse_topic,
    setting_payload,
    status_payload,
    subscription,
    telemetry_payload,
)


def test_topic_scheme() -> None:
    t = Topics("r1")
    assert t.status == "bioreactor/r1/status"
    assert t.telemetry == "bioreactor/r1/telemetry"
    assert t.alarms == "bioreactor/r1/alarms"
    assert t.events == "bioreactor/r1/events"
    assert t.cmd == "bioreactor/r1/cmd"
    assert t.cmd_reply == "bioreactor/r1/cmd/reply"
    assert t.setting("temperature_c_sp") == "bioreactor/r1/settings/temperature_c_sp"
    assert t.setting_set("temperature_c_sp") == "bioreactor/r1/settings/temperature_c_sp/set"
    assert t.settings_set_filter == "bioreactor/r1/settings/+/set"
    assert subscription() == "bioreactor/+/#" and subscription("r1") == "bioreactor/r1/#"
    assert parse_topic("bioreactor/r1/settings/x") == ("r1", "settings/x")
    assert parse_topic("other/r1/status") is None


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "$sys"])
def test_bad_names_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty"):
        Topics(bad)
    with pytest.raises(ValueError):
        Topics("r1").setting(bad)


def test_status_and_will() -> None:
    assert json.loads(LOST_PAYLOAD) == {"state": "lost"}
    body = json.loads(status_payload("running", wall_ts=0.0, run_id="run-7"))
    assert body == {"state": "running", "wall_ts": "1970-01-01T00:00:00.000Z", "run_id": "run-7"}
    with pytest.raises(ValueError, match="init, running, paused, stopping, done, lost"):
        status_payload("exploded")


def test_telemetry_payload_nan_is_null() -> None:
    raw = telemetry_payload(
        seq=1, wall_ts=1_700_000_000.25, t_s=3600.0,
        readings={"temperature_c": (37.01, "degC", "good"),
                  "do_pct_air": ReadingValue(math.nan, "%air", "bad"),
                  "ph": {"value": 7.2, "unit": "pH", "quality": "stale"}},
        setpoints={"temperature": 37.0, "ph": math.inf}, outputs={"heater_pct": 12.5},
        modes={"temperature": "auto", "ph": "manual"})
    assert b"NaN" not in raw and b"Infinity" not in raw
    body = json.loads(raw)
    assert body == {
        "seq": 1, "wall_ts": "2023-11-14T22:13:20.250Z", "t_s": 3600.0,
        "readings": {"temperature_c": {"value": 37.01, "unit": "degC", "quality": "good"},
                     "do_pct_air": {"value": None, "unit": "%air", "quality": "bad"},
                     "ph": {"value": 7.2, "unit": "pH", "quality": "stale"}},
        "setpoints": {"temperature": 37.0, "ph": None}, "outputs": {"heater_pct": 12.5},
        "modes": {"temperature": "auto", "ph": "manual"}}
    with pytest.raises(ValueError, match="seq starts at 1"):
        telemetry_payload(seq=0, wall_ts=0, t_s=0, readings={})
    with pytest.raises(ValueError, match="auto"):
        telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={}, modes={"x": "cascade"})


def test_telemetry_carries_the_recipe_only_for_a_reactor_with_one() -> None:
    body = json.loads(telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={},
                                        recipe={"state": "held", "phase": "expansion"}))
    assert body["recipe"] == {"state": "held", "phase": "expansion"}
    idle = json.loads(telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={},
                                        recipe={"state": "idle", "phase": None}))
    assert idle["recipe"] == {"state": "idle", "phase": None}
    assert "recipe" not in json.loads(telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={}))


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_serializes_to_strict_json(x: float) -> None:
    raw = telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={"a": (x, "u", "good")})
    value = json.loads(raw)["readings"]["a"]["value"]
    assert value == x if math.isfinite(x) else value is None


def test_other_payloads() -> None:
    s = json.loads(setting_payload(value=37.0, unit="degC", minimum=30, maximum=40))
    assert s == {"value": 37.0, "unit": "degC", "min": 30, "max": 40, "settable": True}
    a = json.loads(alarm_payload(wall_ts=0, t_s=5, name="temp_high", severity="alarm",
                                 active=True, message="38.5 degC > 38.0", value=38.5,
                                 run_id="run-7"))
    assert a["active"] is True and a["severity"] == "alarm"
    assert (a["value"], a["run_id"]) == (38.5, "run-7")
    e = json.loads(event_payload(wall_ts=0, t_s=5, kind="feed", message="bolus",
                                 data={"ml": 2.0}, run_id="run-7"))
    assert e["data"] == {"ml": 2.0} and e["run_id"] == "run-7"
    t = json.loads(telemetry_payload(seq=1, wall_ts=0, t_s=0, readings={}, run_id="run-7"))
    assert t["run_id"] == "run-7"
    assert iso_utc(1.999) == "1970-01-01T00:00:01.999Z"


# -- MqttSettings --------------------------------------------------------------------------
def test_url_parsing() -> None:
    s = MqttSettings.from_url("mqtts://op%40lab:p%3Ass@broker.lab:8884", ca_file="/ca.crt",
                              client_id="ctl")
    assert (s.host, s.port, s.tls, s.username, s.password) == ("broker.lab", 8884, True,
                                                               "op@lab", "p:ss")
    assert "p:ss" not in repr(s) and s.url == "mqtts://op@lab:***@broker.lab:8884"
    kw = s.client_kwargs()
    assert kw["hostname"] == "broker.lab" and kw["identifier"] == "ctl"
    assert kw["tls_params"].ca_certs == "/ca.crt"
    plain = MqttSettings.from_url("mqtt://127.0.0.1")
    assert plain.port == 1883 and plain.client_kwargs()["tls_params"] is None


@pytest.mark.parametrize(("url", "part"), [
    ("broker:1883", "scheme"),
    ("http://h:1", "scheme"),
    ("mqtt://:1883", "HOST"),
    ("mqtt://h:abc", "port"),
    ("mqtt://h:70000", "port"),
    ("mqtt://h:1/x", "path"),
    ("mqtt://:pw@h:1", "USER"),
])
def test_url_errors_name_the_part(url: str, part: str) -> None:
    with pytest.raises(ValueError, match=part) as err:
        MqttSettings.from_url(url)
    assert "mqtt[s]://" in str(err.value) and "pw" not in str(err.value)


def test_tls_files_need_mqtts() -> None:
    with pytest.raises(ValueError, match="mqtts"):
        MqttSettings.from_url("mqtt://h:1", ca_file="/ca.crt")


def test_every_priority_has_its_own_documented_severity() -> None:
    assert sorted(SEVERITY_OF_PRIORITY.values()) == sorted(SEVERITIES)
    assert SEVERITY_OF_PRIORITY["critical"] == "critical"
    docs = (REPO / "docs" / "mqtt.md").read_text()
    for priority, severity in SEVERITY_OF_PRIORITY.items():
        assert f"| `{priority}` | `{severity}` |" in docs
