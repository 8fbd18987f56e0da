"""The audit trail: one row for every operator command, applied or refused.

Who asked for what, why, when, and what it changed: what a regulator, a colleague taking over
the culture, or an incident review needs, kept in the run's historian file beside the data it
explains. Append-only: the historian has no UPDATE or DELETE path for it, and triggers in the
schema make SQLite refuse both.

Refused commands are recorded too, with whatever the sender claimed (operator, action, nonce):
a burst of `bad_signature` rows is how a stolen-topic attempt or a mistyped key shows up. For
refusals before the signature check those claims are unauthenticated; `outcome` says which.

Hash chaining (a later issue) will add `prev_hash` and `hash` columns at the end: the hash of a
row is meant to be SHA-256 over `prev_hash` plus the canonical JSON of `AuditRecord.as_dict()`,
which is why every field is a plain string or number and JSON columns are canonical
(sorted keys, no whitespace).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, astuple, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller.commands import APPLIED, Change, Command, CommandRefused

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    wall_iso TEXT NOT NULL, operator TEXT, action TEXT, params_json TEXT, old_json TEXT,
    new_json TEXT, reason TEXT, outcome TEXT NOT NULL, nonce TEXT, cmd_ts REAL, message TEXT);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


@dataclass(frozen=True)
class AuditRecord:
    """One row of the `audit` table, in column order.

    `t_s` is the controller's clock, `wall_iso` its wall clock (UTC) when the outcome was known;
    `cmd_ts` is the wall time the sender signed. `outcome` is "applied" or the refusal code,
    `message` the refusal's explanation (None when applied).
    """

    reactor_id: str
    t_s: float
    wall_iso: str
    operator: str | None
    action: str | None
    params_json: str | None
    old_json: str | None
    new_json: str | None
    reason: str | None
    outcome: str
    nonce: str | None
    cmd_ts: float | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_row(self) -> tuple[Any, ...]:
        return astuple(self)


COLUMNS = tuple(f.name for f in fields(AuditRecord))
INSERT = f"INSERT INTO audit VALUES ({', '.join('?' * len(COLUMNS))})"


def wall_iso(wall_s: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds, e.g. 2026-01-01T00:00:00.250Z."""
    dt = datetime.fromtimestamp(wall_s, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def applied(reactor_id: str, t_s: float, wall_s: float, command: Command,
            change: Change) -> AuditRecord:
    """The row for a command that was applied."""
    return AuditRecord(reactor_id, t_s, wall_iso(wall_s), command.operator, command.action,
                       _json(dict(command.params)), _json(change.old), _json(change.new),
                       command.reason, APPLIED, command.nonce, command.ts, None)


def refused(reactor_id: str, t_s: float, wall_s: float, refusal: CommandRefused) -> AuditRecord:
    """The row for a refused command, with what the sender claimed (see the module docstring).

    A refusal may come before the command could be parsed: then only the outcome is known.
    """
    claimed = refusal.claimed
    return AuditRecord(reactor_id, t_s, wall_iso(wall_s), claimed.get("operator"),
                       claimed.get("action"), _json(claimed.get("params")), None, None,
                       claimed.get("reason"), refusal.code, claimed.get("nonce"),
                       claimed.get("ts"), refusal.message)


def read_audit(db_path: Path | str) -> list[dict[str, Any]]:
    """Every audit row of a historian file, oldest first, as dicts keyed by column name."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such historian file")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone():
            return []  # a run recorded before the audit table existed
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY rowid").fetchall()
    finally:
        con.close()
    return [dict(row) for row in rows]


def recent_nonces(records: Iterable[Mapping[str, Any]], reactor_id: str, now_wall_s: float,
                  max_skew_s: float) -> list[str]:
    """Nonces a restarted controller must still refuse, for `ReplayGuard.seed()`.

    A command recorded at wall time w was signed within max_skew_s of w and stays fresh until
    its ts + max_skew_s, so rows from the last 2 * max_skew_s are enough. Every outcome counts:
    seeding a nonce that was never consumed (a forged command's) costs nothing, because real
    nonces are random.
    """
    since = now_wall_s - 2.0 * max_skew_s
    return [
        r["nonce"] for r in records
        if r["reactor_id"] == reactor_id and r["nonce"]
        and datetime.fromisoformat(r["wall_iso"]).timestamp() >= since
    ]
