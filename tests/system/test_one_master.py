"""One master per device, as a user meets it: `bioreactor emulate` in one process, a first
`bioreactor run` controlling it, then a second `bioreactor run` against the same device. The
second is refused (the device's lease is the first's), says so on its console and raises the
alarm `device_held`; the first keeps control. Once the first stops, its lease lapses and the
second takes over. Real processes over a real Modbus TCP link."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from plugins.hil import controller, emulator, stop, ticks_recorded
from plugins.records import count_rows
from plugins.waiting import wait_until

CONFIG = "hil_modbus_tcp.toml"


def alarm_events(db: Path, name: str) -> list[dict]:
    """The data of `name`'s alarm events so far ([] while the run file is being created)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT data_json FROM events WHERE kind = 'alarm'").fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return []
    return [data for (text,) in rows if (data := json.loads(text)).get("alarm") == name]


def test_a_second_controller_is_refused_and_alarms_while_the_first_keeps_control(
        tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with emulator(CONFIG, "modbus-tcp://127.0.0.1:0") as (_, url):
        first = controller(CONFIG, url, first_dir, "12h")
        second = None
        try:
            wait_until(lambda: ticks_recorded(first_dir) >= 5, 60, "the first controller ticks")
            second = controller(CONFIG, url, second_dir, "12h")
            wait_until(lambda: alarm_events(second_dir / "run.sqlite", "device_held"), 60,
                       "the second controller raises device_held")
            ticks_before = ticks_recorded(first_dir)
            wait_until(lambda: ticks_recorded(second_dir) >= 20, 60,
                       "the second controller keeps running (reading, refused)")
            wait_until(lambda: ticks_recorded(first_dir) > ticks_before + 10, 60,
                       "the first controller keeps ticking")
            first_out, first_err = stop(first)
            # The first is gone: its lease lapses with the device's watchdog (2 s) and the
            # second, still asking with every heartbeat, takes control.
            wait_until(lambda: [a for a in alarm_events(second_dir / "run.sqlite",
                                                        "device_held") if not a["active"]],
                       60, "the second controller to take the lapsed lease")
            second_out, second_err = stop(second)
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    stop(proc)
    console = second_out + second_err
    assert "device held by another controller" in console, console
    assert "Traceback" not in console, console
    raised, cleared = alarm_events(second_dir / "run.sqlite", "device_held")
    assert raised["active"] is True and raised["priority"] == "high"
    assert cleared["active"] is False
    assert "device control taken" in console, console
    # While held, every write of the second's was held back, none refused.
    assert count_rows(second_dir / "run.sqlite", "SELECT COUNT(*) FROM events WHERE "
                      "kind = 'comm' AND message LIKE 'write failed%'") == 0
    # The first kept control while it ran: never refused, never held, no write failed.
    assert alarm_events(first_dir / "run.sqlite", "device_held") == []
    assert count_rows(first_dir / "run.sqlite", "SELECT COUNT(*) FROM events WHERE "
                      "kind = 'comm'") == 0, first_out + first_err
    assert "Traceback" not in first_out + first_err
