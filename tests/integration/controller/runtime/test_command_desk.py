"""Where commands arrive on a real Reactor: the topic each came on is checked, and a nonce store
that cannot be written is put on record without losing the command."""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path

from plugins.reactors import default_reactor

from controller import clock as clock_module
from controller.clock import Clock
from controller.operator.audit import read_audit
from controller.operator.nonce_store import NonceStore
from controller.operator.protocol import sign
from controller.operator.replay import ReplayGuard

KEY = bytes(range(32))


def _setpoint(loop: str, value: float) -> bytes:
    return json.dumps(sign({"operator": "alice", "reactor": "hsc-1", "action": "set_setpoint",
                            "params": {"loop": loop, "value": value}, "reason": "test",
                            "ts": time.time(), "nonce": secrets.token_hex(16)}, KEY)).encode()


async def _scenario(tmp_path: Path) -> dict[str, float]:
    reactor, historian = default_reactor(tmp_path / "run.sqlite", Clock())
    await reactor.start()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be")
    store = NonceStore(blocker / "replay_nonces.sqlite", "hsc-1")
    reactor.commands.enable({"alice": KEY}, ReplayGuard(30.0, store=store,
                                                        now_wall_s=time.time()))
    desk = reactor.commands
    desk.receive("bioreactor/hsc-1/settings/temperature.setpoint/set", _setpoint("ph", 7.25))
    desk.receive("bioreactor/hsc-1/settings/ph.setpoint/set", _setpoint("ph", 7.2))
    desk.receive("bioreactor/hsc-1/status", _setpoint("ph", 7.4))
    desk.receive("bioreactor/hsc-1/cmd", _setpoint("temperature", 36.8), True)
    await reactor.tick()
    setpoints = {loop.name: loop.setpoint for loop in reactor.loops}
    await reactor.go_safe("test")
    historian.close()
    return setpoints


def test_each_command_is_checked_against_the_topic_it_came_on(tmp_path: Path) -> None:
    setpoints = clock_module.run(_scenario(tmp_path), None)
    assert setpoints["ph"] == 7.2 and setpoints["temperature"] == 37.0
    audit = read_audit(tmp_path / "run.sqlite")
    assert [r["outcome"] for r in audit] == ["wrong_topic", "wrong_topic", "retained", "applied"]
    assert "settings/temperature.setpoint/set" in audit[0]["message"]
    assert "bioreactor/hsc-1/status" in audit[1]["message"]
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        events = [m for (m,) in con.execute("SELECT message FROM events WHERE kind = 'operator'")]
    # Two authentic, fresh commands reached the store (the pH ones); both failures are on record.
    assert sum("nonce store failed" in m for m in events) == 2
