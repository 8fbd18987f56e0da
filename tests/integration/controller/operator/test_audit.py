"""The audit trail: every command, applied or refused, is written through the real Historian."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from plugins.waiting import wait_until

from controller.operator import audit
from controller.operator.bounds import CommandBounds, LoopBounds
from controller.operator.protocol import Change, CommandRefused, sign
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from controller.runtime.historian import Historian, RunInfo

RUN = RunInfo("run-1", "2026-01-01T00:00:00+00:00", 5, 1.0, "[run]\n", [("hsc-1", "sim://")])
NOW = 1_767_225_600.0
KEY = bytes(range(32))
BOUNDS = CommandBounds("hsc-1", {"temperature": LoopBounds(35.0, 39.0, 0.0, 100.0)}, 20.0)


def _command(value: float, nonce: str, key: bytes = KEY) -> bytes:
    body = {"operator": "alice", "reactor": "hsc-1", "action": "set_setpoint",
            "params": {"loop": "temperature", "value": value}, "reason": "day-7 check",
            "ts": NOW, "nonce": nonce}
    return json.dumps(sign(body, key)).encode()


def _outcomes(guard: ReplayGuard) -> list[audit.AuditRecord]:
    """What the runtime will do: verify, apply (here: a fixed Change) or refuse, and audit."""
    records = []
    for t_s, raw in enumerate([
        _command(36.5, "a1" * 8),
        _command(36.5, "a1" * 8),            # replayed
        _command(45.0, "b2" * 8),            # out of range
        _command(36.0, "c3" * 8, b"x" * 32),  # wrong key
        b"garbage",                          # malformed
    ]):
        try:
            command = verify(raw, {"alice": KEY}, guard, NOW + t_s, BOUNDS)
        except CommandRefused as refusal:
            records.append(audit.refused("hsc-1", float(t_s), NOW + t_s, refusal))
        else:
            change = Change({"setpoint": 37.0}, {"setpoint": command.params["value"]})
            records.append(audit.applied("hsc-1", float(t_s), NOW + t_s, command, change))
    return records


def test_applied_and_refused_commands_are_written_and_read_back(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    historian = Historian(db, RUN)
    for record in _outcomes(ReplayGuard()):
        historian.record_audit(record)
    historian.close()
    rows = audit.read_audit(db)
    assert [r["outcome"] for r in rows] == [
        "applied", "replayed", "out_of_range", "bad_signature", "malformed"]
    first = rows[0]
    assert first == {
        "reactor_id": "hsc-1", "t_s": 0.0, "wall_iso": "2026-01-01T00:00:00.000Z",
        "operator": "alice", "action": "set_setpoint",
        "params_json": '{"loop":"temperature","value":36.5}',
        "old_json": '{"setpoint":37.0}', "new_json": '{"setpoint":36.5}',
        "reason": "day-7 check", "outcome": "applied", "nonce": "a1" * 8, "cmd_ts": NOW,
        "message": None,
    }
    out_of_range = rows[2]
    assert out_of_range["nonce"] == "b2" * 8 and out_of_range["old_json"] is None
    assert out_of_range["message"] == "value = 45 outside the allowed range [35, 39]"
    assert rows[3]["operator"] == "alice"  # claimed, not authenticated: the outcome says so
    garbage = rows[4]
    assert garbage["operator"] is None and garbage["nonce"] is None
    assert garbage["message"].startswith("not JSON")


def test_an_audit_row_is_committed_without_waiting_for_close(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    historian = Historian(db, RUN)
    historian.record_audit(_outcomes(ReplayGuard())[0])

    def audit_rows() -> list[dict]:
        try:
            return audit.read_audit(db)
        except (FileNotFoundError, sqlite3.OperationalError):  # the writer is still starting
            return []

    rows = wait_until(audit_rows, 20.0, "the audit row committed")
    historian.close()
    assert [r["outcome"] for r in rows] == ["applied"]


def test_the_audit_table_refuses_update_and_delete(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    historian = Historian(db, RUN)
    historian.record_audit(_outcomes(ReplayGuard())[0])
    historian.close()
    with sqlite3.connect(db) as con:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("UPDATE audit SET operator = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM audit")
    assert audit.read_audit(db)[0]["operator"] == "alice"


def test_a_run_recorded_before_the_audit_table_reads_as_empty(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    sqlite3.connect(db).close()
    assert audit.read_audit(db) == []
    with pytest.raises(FileNotFoundError):
        audit.read_audit(tmp_path / "missing.sqlite")


def test_record_fields_match_the_table() -> None:
    con = sqlite3.connect(":memory:")
    con.executescript(audit.SCHEMA)
    assert tuple(r[1] for r in con.execute("PRAGMA table_info(audit)")) == audit.COLUMNS
