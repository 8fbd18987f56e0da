"""The dashboard's actions against a real Mosquitto and a running `bioreactor run`: what `act`
signs is what the controller accepts, applies and audits under the account's name, a wrong key
is the controller's to refuse, and a role that may not act publishes nothing."""
from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.mosquitto import KEY, Subscriber
from plugins.processes import BIN
from plugins.waiting import wait_until

from controller.dashboard.accounts import Account, load_dashboard_config
from controller.dashboard.acting import ActionRefused, act
from controller.dashboard.passwords import hash_password
from controller.mqtt.link import MqttSettings
from controller.operator.audit import read_audit

BOB_KEY = "a5" * 24
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)


def controller_config(tmp_path: Path, broker_url: str) -> Path:
    """The default culture on the broker, with operators alice, bob and eve."""
    text = DEFAULT_CONFIG_PATH.read_text()
    text += (f'\n[mqtt]\nurl = "{broker_url}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
             f'\n[[operator]]\nname = "alice"\nkey_hex = "{KEY}"\n'
             f'\n[[operator]]\nname = "bob"\nkey_hex = "{BOB_KEY}"\n'
             f'\n[[operator]]\nname = "eve"\nkey_hex = "{"dd" * 16}"\n')
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def dashboard_config(tmp_path: Path) -> Path:
    """alice operator, bob supervisor (key in a file), vic viewer, eve with a key that is
    not the one the controller holds for her."""
    hashed = hash_password("pw", CHEAP)
    (tmp_path / "bob.key").write_text(BOB_KEY + "\n")
    accounts = [("alice", "operator", f'key_hex = "{KEY}"'),
                ("bob", "supervisor", f'key_file = "{tmp_path / "bob.key"}"'),
                ("vic", "viewer", f'key_hex = "{"11" * 16}"'),
                ("eve", "operator", f'key_hex = "{"ee" * 16}"')]
    path = tmp_path / "dashboard.toml"
    path.write_text("".join(f'[[account]]\nname = "{name}"\nrole = "{role}"\n{key}\n'
                            f'password_hash = "{hashed}"\n' for name, role, key in accounts))
    return path


def send(account: Account, settings: MqttSettings, action: str, reason: str,
         **params: str) -> dict[str, Any]:
    return asyncio.run(act(account, reactor="hsc-1", action=action, params=params,
                           reason=reason, settings=settings, wall_clock=time.time,
                           new_nonce=lambda: secrets.token_hex(16), timeout_s=60.0))


def test_the_controller_accepts_what_the_dashboard_signs(broker, tmp_path: Path) -> None:
    b = broker()
    settings = MqttSettings.from_url(b.url)
    accounts = load_dashboard_config(dashboard_config(tmp_path))
    alice, bob, vic, eve = (accounts.find(n) for n in ("alice", "bob", "vic", "eve"))
    assert alice and bob and vic and eve
    commands = Subscriber(b, "bioreactor/hsc-1/cmd", tmp_path / "cmd.txt")
    telemetry = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "telemetry.txt")
    run = subprocess.Popen(
        [BIN / "bioreactor", "run", str(controller_config(tmp_path, b.url)), "--speed", "20",
         "--duration", "1d", "--quiet", "--db", str(tmp_path / "run.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(telemetry.messages, 60, "the controller's first telemetry")
        with pytest.raises(ActionRefused) as refused:
            send(vic, settings, "ack_alarm", "seen", alarm="do_low")
        assert refused.value.code == "forbidden"
        with pytest.raises(ActionRefused) as refused:
            send(alice, settings, "set_mode", "calibrate", loop="ph", mode="manual")
        assert refused.value.code == "forbidden"
        applied = send(alice, settings, "set_setpoint", "from the dashboard", loop="ph",
                       value="7.25")
        supervised = send(bob, settings, "set_mode", "calibration", loop="ph",
                          mode="manual")
        wrong_key = send(eve, settings, "pause_schedule", "not mine to do")
        wait_until(lambda: len(commands.messages()) >= 3, 30, "three commands on the broker")
    finally:
        commands.close()
        telemetry.close()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert "Traceback" not in err
    assert applied["ok"] is True and applied["code"] == "applied", applied
    assert applied["new"] == {"setpoint": 7.25}
    assert supervised["ok"] is True and supervised["code"] == "applied", supervised
    assert wrong_key["ok"] is False and wrong_key["code"] == "bad_signature", wrong_key
    # Only what was signed went out: the refused ones never reached the broker.
    assert [(c["operator"], c["action"]) for c in commands.messages()] == [
        ("alice", "set_setpoint"), ("bob", "set_mode"), ("eve", "pause_schedule")]
    audit = read_audit(tmp_path / "run.sqlite")
    assert [(r["operator"], r["action"], r["outcome"]) for r in audit] == [
        ("alice", "set_setpoint", "applied"), ("bob", "set_mode", "applied"),
        ("eve", "pause_schedule", "bad_signature")]
    assert audit[0]["reason"] == "from the dashboard"
    assert json.loads(audit[0]["new_json"]) == {"setpoint": 7.25}
