"""The audit trail's hash chain: written by the real Historian, checked by verify_audit and
`bioreactor audit verify`, and tampered with as an attacker holding the file would."""
from __future__ import annotations

import argparse
import itertools
import sqlite3
from pathlib import Path

import pytest

from controller.cli import audit as audit_cli
from controller.operator import audit
from controller.operator.protocol import Change, Command, CommandRefused
from controller.runtime.historian import Historian, RunInfo
from drivers.contract.datasheet import INPUTS, OUTPUTS
from drivers.contract.reading import Quality, Reading

RUN = RunInfo("run-1", "2026-01-01T00:00:00+00:00", 5, 1.0, "[run]\n", [("hsc-1", "sim://")])
RUN_AGAIN = RunInfo("run-1b", "2026-01-02T00:00:00+00:00", 5, 1.0, "[run]\n",
                    [("hsc-2", "sim://")])
NOW = 1_767_225_600.0


def _applied(i: int) -> audit.AuditRecord:
    command = Command("alice", "hsc-1", "set_setpoint", {"loop": "temperature", "value": 36.5},
                      f"check {i} \u00b0C", NOW + i, f"{i:016x}")
    return audit.applied("hsc-1", float(i), NOW + i, command,
                         Change({"setpoint": 37.0}, {"setpoint": 36.5}))


def _refused(i: int) -> audit.AuditRecord:
    refusal = CommandRefused("bad_signature", "the signature does not match the body",
                             {"operator": "mallory", "action": "bolus", "nonce": f"{i:016x}",
                              "params": {"volume_ml": 5, "channel": "feed_ml_per_h"},
                              "ts": NOW + i})
    return audit.refused("hsc-1", i, NOW + i, refusal)  # an int t_s: stored as REAL


def _record(db: Path, run: RunInfo, indices: range) -> None:
    """Audit rows through the real Historian, each in its own batch, between tick batches."""
    historian = Historian(db, run)
    readings = {c.name: Reading(1.0, "", float(i), Quality.GOOD)
                for i, c in enumerate(INPUTS)}
    for i in indices:
        historian.record_tick("hsc-1", float(i), readings, {c.name: 0.0 for c in OUTPUTS})
        historian.flush()
        historian.record_audit(_applied(i) if i % 2 == 0 else _refused(i))
    historian.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "run.sqlite"
    _record(path, RUN, range(6))
    return path


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT rowid, {', '.join(audit.COLUMNS)} FROM audit "
                           "ORDER BY rowid").fetchall()


def _attacker(db: Path) -> sqlite3.Connection:
    """A connection with the append-only triggers dropped, as an attacker would."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return con


def _verify_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bioreactor")
    add = parser.add_subparsers(dest="command", required=True)
    audit_cli.add_audit_parser(add)
    args = parser.parse_args(["audit", "verify", *argv])
    return args.func(args)


# ----------------------------------------------------------------------------- intact
def test_rows_written_through_the_historian_verify_intact(db: Path) -> None:
    verdict = audit.verify_audit(db)
    assert verdict == audit.AuditVerdict(True, 6, None, "", _rows(db)[-1][-1])
    rows = _rows(db)
    assert rows[0][-2] == audit.genesis_hash("run-1")
    for before, after in itertools.pairwise(rows):
        assert after[-2] == before[-1]  # each prev_hash is the previous row's hash
    assert len({r[-1] for r in rows}) == 6
    # read_audit still returns the recorded fields only
    assert set(audit.read_audit(db)[0]) == set(audit.CONTENT_COLUMNS)


def test_the_hash_is_sha256_over_prev_hash_and_canonical_json(db: Path) -> None:
    """The construction docs/audit.md describes, recomputed here without the module's helpers."""
    import hashlib
    import json
    _, *values = _rows(db)[1]
    content = dict(zip(audit.CONTENT_COLUMNS, values[:13], strict=True))
    assert content["t_s"] == 1.0 and isinstance(content["t_s"], float)
    prev_hash, digest = values[13:]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(prev_hash.encode() + text.encode()).hexdigest() == digest
    genesis = hashlib.sha256(b"bioreactor-hil audit genesis v1\nrun-1").hexdigest()
    assert _rows(db)[0][-2] == genesis


def test_a_reopened_file_continues_the_chain(db: Path) -> None:
    last = _rows(db)[-1][-1]
    _record(db, RUN_AGAIN, range(6, 9))
    rows = _rows(db)
    assert len(rows) == 9
    assert rows[6][-2] == last
    assert audit.verify_audit(db).intact
    assert audit.verify_audit(db).rows == 9


def test_an_empty_trail_is_intact(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    Historian(path, RUN).close()
    verdict = audit.verify_audit(path)
    assert verdict.intact and verdict.rows == 0
    assert verdict.last_hash == audit.genesis_hash("run-1")


def test_a_file_from_before_the_chain_gets_the_columns_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE audit (reactor_id TEXT NOT NULL, t_s REAL NOT NULL, "
                    "wall_iso TEXT NOT NULL, operator TEXT, action TEXT, params_json TEXT, "
                    "old_json TEXT, new_json TEXT, reason TEXT, outcome TEXT NOT NULL, "
                    "nonce TEXT, cmd_ts REAL, message TEXT)")
    with pytest.raises(audit.AuditTrailMissing, match="no hash chain"):
        audit.verify_audit(path)
    _record(path, RUN, range(3))
    assert audit.verify_audit(path).intact


# ----------------------------------------------------------------------------- tampering
def test_a_changed_field_is_detected_and_located(db: Path) -> None:
    with _attacker(db) as con:
        con.execute("UPDATE audit SET operator = 'bob' WHERE rowid = 3")
    verdict = audit.verify_audit(db)
    assert not verdict.intact and verdict.rows == 6
    assert verdict.first_bad_rowid == 3
    assert "changed" in verdict.reason


@pytest.mark.parametrize("column, value", [("t_s", 2.0000001), ("message", "ok"),
                                           ("params_json", '{"loop":"ph","value":36.5}'),
                                           ("cmd_ts", None), ("hash", "0" * 64)])
def test_any_changed_column_is_detected(db: Path, column: str, value: object) -> None:
    with _attacker(db) as con:
        con.execute(f"UPDATE audit SET {column} = ? WHERE rowid = 2", (value,))
    assert audit.verify_audit(db).first_bad_rowid == 2


def test_a_change_with_a_recomputed_hash_breaks_the_next_link(db: Path) -> None:
    rows = _rows(db)
    content = dict(zip(audit.CONTENT_COLUMNS, rows[2][1:14], strict=True))
    content["operator"] = "bob"
    with _attacker(db) as con:
        con.execute("UPDATE audit SET operator = 'bob', hash = ? WHERE rowid = 3",
                    (audit.row_hash(rows[2][-2], content),))
    verdict = audit.verify_audit(db)
    assert verdict.first_bad_rowid == 4 and "record 3" in verdict.reason


def test_a_deleted_row_is_detected_at_the_gap(db: Path) -> None:
    with _attacker(db) as con:
        con.execute("DELETE FROM audit WHERE rowid = 3")
    verdict = audit.verify_audit(db)
    assert not verdict.intact and verdict.rows == 5
    assert verdict.first_bad_rowid == 4
    assert "deleted" in verdict.reason


def test_a_deleted_first_row_is_detected(db: Path) -> None:
    with _attacker(db) as con:
        con.execute("DELETE FROM audit WHERE rowid = 1")
    assert audit.verify_audit(db).first_bad_rowid == 2


def test_a_forged_row_appended_is_detected(db: Path) -> None:
    forged = (*audit.AuditRecord(*(_rows(db)[0][1:14])).as_row(), _rows(db)[-1][-1], "f" * 64)
    with _attacker(db) as con:
        con.execute(audit.INSERT, forged)
    verdict = audit.verify_audit(db)
    assert verdict.first_bad_rowid == 7 and "changed" in verdict.reason


def test_a_forged_row_inserted_without_a_chain_is_detected_at_itself(db: Path) -> None:
    rows = _rows(db)
    with _attacker(db) as con:
        con.execute("DELETE FROM audit")
        for i, row in enumerate(rows):
            if i == 2:
                con.execute(audit.INSERT, (*row[1:4], "mallory", *row[5:14], "", ""))
            con.execute(audit.INSERT, row[1:])
    verdict = audit.verify_audit(db)
    assert verdict.rows == 7 and verdict.first_bad_rowid == 3


def test_a_forged_row_inserted_and_chained_is_detected_after_it(db: Path) -> None:
    """The forger chains the new row from its predecessor; the original successor then no
    longer links, so the break is named right after the forged row."""
    rows = _rows(db)
    content = dict(zip(audit.CONTENT_COLUMNS, rows[1][1:14], strict=True))
    content["operator"] = "bob"
    content["outcome"] = "applied"
    forged = (*content.values(), rows[1][-1], audit.row_hash(rows[1][-1], content))
    with _attacker(db) as con:
        con.execute("DELETE FROM audit")
        for i, row in enumerate(rows):
            con.execute(audit.INSERT, row[1:])
            if i == 1:
                con.execute(audit.INSERT, forged)
    verdict = audit.verify_audit(db)
    assert verdict.rows == 7 and verdict.first_bad_rowid == 4
    assert "record 3" in verdict.reason


def test_swapped_rows_are_detected(db: Path) -> None:
    rows = _rows(db)
    assignments = ", ".join(f"{c} = ?" for c in audit.COLUMNS)
    with _attacker(db) as con:
        con.execute(f"UPDATE audit SET {assignments} WHERE rowid = 2", rows[2][1:])
        con.execute(f"UPDATE audit SET {assignments} WHERE rowid = 3", rows[1][1:])
    verdict = audit.verify_audit(db)
    assert verdict.first_bad_rowid == 2 and "reordered" in verdict.reason


def test_rows_cannot_be_moved_to_another_run(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET run_id = 'run-2'")
    verdict = audit.verify_audit(db)
    assert verdict.first_bad_rowid == 1 and "genesis" in verdict.reason


def test_truncation_and_a_consistent_rewrite_need_the_published_last_hash(db: Path) -> None:
    """What the chain alone cannot see (docs/audit.md): rows cut off the end, or every row
    rewritten and re-chained from genesis. The last hash published earlier catches both."""
    published = audit.verify_audit(db).last_hash
    rows = _rows(db)
    with _attacker(db) as con:
        con.execute("DELETE FROM audit WHERE rowid = 6")
    assert audit.verify_audit(db).intact  # alone, truncation looks intact
    verdict = audit.verify_audit(db, expected_last_hash=published)
    assert not verdict.intact and verdict.first_bad_rowid is None
    assert "cut off" in verdict.reason

    chain_prev = audit.genesis_hash("run-1")
    with _attacker(db) as con:
        con.execute("DELETE FROM audit")
        for row in rows:
            content = dict(zip(audit.CONTENT_COLUMNS, row[1:14], strict=True))
            content["operator"] = "bob"
            digest = audit.row_hash(chain_prev, content)
            con.execute(audit.INSERT, (*content.values(), chain_prev, digest))
            chain_prev = digest
    assert audit.verify_audit(db).intact  # a consistent rewrite from the start
    assert not audit.verify_audit(db, expected_last_hash=published).intact
    assert _verify_cli(str(db), "--expect-last-hash", published) == 1


# ----------------------------------------------------------------------------- the command
def test_cli_intact(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify_cli(str(db)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "intact: 6 records"
    assert out[1] == f"last hash: {audit.verify_audit(db).last_hash}"
    published = audit.verify_audit(db).last_hash
    assert _verify_cli(str(db), "--expect-last-hash", published.upper()) == 0


def test_cli_tampered(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _attacker(db) as con:
        con.execute("DELETE FROM audit WHERE rowid = 2")
    assert _verify_cli(str(db)) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED: first bad record rowid 3 (prev_hash does not match")


def test_cli_run_audit_verify_directly(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_cli.run_audit_verify(argparse.Namespace(db=db)) == 0
    assert capsys.readouterr().out.startswith("intact: 6 records\n")


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify_cli(str(tmp_path / "missing.sqlite")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no such historian file" in captured.err


def test_cli_file_without_audit_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE ticks (t_s REAL)")
    assert _verify_cli(str(path)) == 2
    assert "no audit table" in capsys.readouterr().err


def test_cli_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"this is not SQLite\n" * 100)
    assert _verify_cli(str(path)) == 2
    assert "not a historian file" in capsys.readouterr().err


def test_bioreactor_audit_verify_command(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main as cli

    assert cli.main(["audit", "verify", str(db)]) == 0
    assert capsys.readouterr().out.startswith("intact: 6 records\n")
