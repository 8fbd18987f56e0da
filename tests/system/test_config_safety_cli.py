"""`bioreactor check-config` and `bioreactor run` on unsafe configs, as subprocesses: the same
one-line-per-problem error naming the key, a non-zero exit, no traceback; warnings printed and
recorded as `config_warning` events."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.configs import DEFAULT_CONFIG_PATH, REPO, TIMETABLE_CONFIG_PATH


def bioreactor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def edited(tmp_path: Path, old: str, new: str, base: Path = DEFAULT_CONFIG_PATH) -> Path:
    text = base.read_text()
    assert old in text
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(("old", "new", "key"), [
    ("heater_pct = 0.0\no2", "heater_pct = 100.0\no2", "reactor[0].safe_state.heater_pct"),
    ("setpoint = 37.0", "setpoint = 45.0", "reactor[0].loops.temperature.setpoint"),
    ("setpoint = 7.30", "setpoint = 7.7", "reactor[0].loops.ph.setpoint"),
])
def test_check_config_and_run_refuse_an_unsafe_config(tmp_path: Path, old: str, new: str,
                                                      key: str) -> None:
    path = edited(tmp_path, old, new)
    check = bioreactor("check-config", path)
    run = bioreactor("run", path, "--duration", "1h", "--quiet", "--db", tmp_path / "r.sqlite")
    for result in (check, run):
        assert result.returncode == 2, result.stderr
        assert key in result.stderr
        assert "Traceback" not in result.stderr
    assert check.stderr == run.stderr
    assert not (tmp_path / "r.sqlite").exists()


def test_warnings_are_printed_and_recorded(tmp_path: Path) -> None:
    # the schedule-fed timetable: its schedule entries after a shortened run's end warn too
    path = edited(tmp_path, "[reactor.safe_state]",
                  "[reactor.interlocks.o2_supply_lost]\nenabled = false\n\n[reactor.safe_state]",
                  base=TIMETABLE_CONFIG_PATH)
    check = bioreactor("check-config", path)
    assert check.returncode == 0, check.stderr
    assert "warning: reactor[0].interlocks.o2_supply_lost.enabled = False" in check.stderr
    assert "schedule" not in check.stderr  # the config's own 14 days reach every entry
    db = tmp_path / "r.sqlite"
    run = bioreactor("run", path, "--duration", "1h", "--quiet", "--db", db)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "warning: reactor[0].interlocks.o2_supply_lost.enabled = False" in run.stderr
    assert "warning: reactor[0].schedule.bolus[0].at = 4d 00:00:00" in run.stderr
    with sqlite3.connect(db) as conn:
        messages = [m for (m,) in conn.execute(
            "SELECT message FROM events WHERE kind = 'config_warning'")]
    assert messages[0].startswith("reactor[0].interlocks.o2_supply_lost.enabled = False")
    assert any(m.startswith("reactor[0].schedule.perfusion[1].at") for m in messages)


def test_a_config_that_is_not_utf8_is_one_line_for_every_command(tmp_path: Path) -> None:
    """A Latin-1 config ("°C" in a comment) was a UnicodeDecodeError's traceback from run,
    check-config and sweep alike."""
    text = DEFAULT_CONFIG_PATH.read_text()
    path = tmp_path / "latin1.toml"
    path.write_bytes(("# at 37 °C\n" + text).encode("latin-1"))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'base = "{path.name}"\nduration = "1h"\n[axes]\nseed = [1]\n')
    expected = (f"{path}: not UTF-8 text, as a TOML config file must be: byte 0xb0 on line 1; "
                f"save it as UTF-8")
    for result in (bioreactor("check-config", path),
                   bioreactor("run", path, "--duration", "1h", "--quiet",
                              "--db", tmp_path / "r.sqlite"),
                   bioreactor("sweep", sweep, "--out", tmp_path / "out")):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert expected in result.stderr
    assert not (tmp_path / "r.sqlite").exists()
