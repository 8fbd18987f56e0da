"""Every line the emulator prints carries the time, so an operator can line it up with the
controller's log (whose lines are stamped the same way)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sim_hardware.device.emulate import run_emulate

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")


def test_an_error_line_is_stamped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(config=tmp_path / "missing.toml", listen="modbus-tcp://127.0.0.1:0",
                              speed=1.0, seed=None, comm_timeout=5.0, fault=[])
    assert run_emulate(args) == 2
    err = capsys.readouterr().err
    assert STAMP.match(err), err
    assert "error: " in err and "missing.toml: no such config file" in err
