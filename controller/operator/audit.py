"""The audit trail: one row for every operator command, applied or refused, and for every
change the controller makes on its own to what it measures (operator `system`: a probe
re-standardised against its reference).

Who asked for what, why, when, and what it changed: what a regulator, a colleague taking over
the culture, or an incident review needs, kept in the run's historian file beside the data it
explains. Append-only: the historian has no UPDATE or DELETE path for it, and triggers in the
schema make SQLite refuse both.

Refused commands are recorded too, with whatever the sender claimed (operator, action, nonce):
a burst of `bad_signature` rows is how a stolen-topic attempt or a mistyped key shows up. For
refusals before the signature check those claims are unauthenticated; `outcome` says which.

Hash chain: the table ends with `prev_hash` and `hash` columns. A row's `hash` is SHA-256 (hex)
over its `prev_hash` (64 ASCII hex digits) followed by the canonical JSON of
`AuditRecord.as_dict()` (UTF-8, sorted keys, no whitespace); its `prev_hash` is the previous
row's `hash`, and the first row's is `genesis_hash(run_id)` of the file's first run, so a row
cannot be moved to another run's file. The historian's writer process computes the chain
(`AuditChain`), because it alone writes the rows, in order. `verify_audit()` recomputes it and
names the first record where it breaks. See docs/audit.md for what this does and does not prove.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.operator.protocol import APPLIED, Change, Command, CommandRefused

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    wall_iso TEXT NOT NULL, operator TEXT, action TEXT, params_json TEXT, old_json TEXT,
    new_json TEXT, reason TEXT, outcome TEXT NOT NULL, nonce TEXT, cmd_ts REAL, message TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
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


CONTENT_COLUMNS = tuple(f.name for f in fields(AuditRecord))
"""The recorded fields: what `read_audit` returns and what a row's hash covers."""
CHAIN_COLUMNS = ("prev_hash", "hash")
COLUMNS = CONTENT_COLUMNS + CHAIN_COLUMNS
"""Every column of the `audit` table, in order."""
INSERT = f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
"""Takes a chained row (`AuditChain.link`), not a bare `AuditRecord.as_row()`."""

GENESIS_DOMAIN = b"bioreactor-hil audit genesis v1\n"
_REAL_COLUMNS = frozenset({"t_s", "cmd_ts"})


def wall_iso(wall_s: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds, e.g. 2026-01-01T00:00:00.250Z."""
    dt = datetime.fromtimestamp(wall_s, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def applied(reactor_id: str, t_s: float, wall_s: float, command: Command,
            change: Change) -> AuditRecord:
    """The row for a command that was applied."""
    return AuditRecord(reactor_id, t_s, wall_iso(wall_s), command.operator, command.action,
                       _json(dict(command.params)), _json(change.old), _json(change.new),
                       command.reason, APPLIED, command.nonce, command.ts, None)


SYSTEM = "system"
"""The `operator` of a row the controller made itself (a probe re-standardised against its
reference): no person and no signed command, so no nonce and no command time."""


def by_system(reactor_id: str, t_s: float, wall_s: float, action: str,
              params: Mapping[str, Any], old: Any, new: Any, reason: str) -> AuditRecord:
    """The row for a change the controller made on its own (operator `system`)."""
    return AuditRecord(reactor_id, t_s, wall_iso(wall_s), SYSTEM, action, _json(dict(params)),
                       _json(old), _json(new), reason, APPLIED, None, None, None)


def refused(reactor_id: str, t_s: float, wall_s: float, refusal: CommandRefused) -> AuditRecord:
    """The row for a refused command, with what the sender claimed (see the module docstring).

    A refusal may come before the command could be parsed: then only the outcome is known.
    """
    claimed = refusal.claimed
    return AuditRecord(reactor_id, t_s, wall_iso(wall_s), claimed.get("operator"),
                       claimed.get("action"), _json(claimed.get("params")), None, None,
                       claimed.get("reason"), refusal.code, claimed.get("nonce"),
                       claimed.get("ts"), refusal.message)


# --- the hash chain ---------------------------------------------------------------------------
def genesis_hash(run_id: str) -> str:
    """The first row's `prev_hash`: SHA-256 hex of GENESIS_DOMAIN + the run id (UTF-8)."""
    return hashlib.sha256(GENESIS_DOMAIN + run_id.encode("utf-8")).hexdigest()


def canonical_content(content: Mapping[str, Any]) -> bytes:
    """The row's content fields (CONTENT_COLUMNS) as canonical JSON: sorted keys, no
    whitespace, UTF-8 with non-ASCII characters as themselves, floats as Python's repr."""
    return json.dumps({name: content[name] for name in CONTENT_COLUMNS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """SHA-256 hex over prev_hash (ASCII) followed by `canonical_content(content)`."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_content(content)).hexdigest()


def _as_stored(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Content values as SQLite will give them back, so the hash computed before the INSERT
    is the hash `verify_audit` recomputes from the file: REAL columns as float (NaN reads back
    as NULL), TEXT columns as str."""
    out: list[Any] = []
    for name, value in zip(CONTENT_COLUMNS, row, strict=True):
        if value is None:
            out.append(None)
        elif name in _REAL_COLUMNS:
            number = float(value)
            out.append(None if math.isnan(number) else number)
        else:
            out.append(value if isinstance(value, str) else str(value))
    return tuple(out)


class AuditChain:
    """The chain's state in the one process that writes audit rows, in order.

    Opened on the writer's connection after the run is recorded: it continues from the last
    row's hash, or starts from the genesis value of the file's first run.
    """

    def __init__(self, con: sqlite3.Connection) -> None:
        columns = {r[1] for r in con.execute("PRAGMA table_info(audit)")}
        if not set(CHAIN_COLUMNS) <= columns:  # a file written before the chain existed
            with con:
                for name in CHAIN_COLUMNS:
                    if name not in columns:
                        con.execute(f"ALTER TABLE audit ADD COLUMN {name} TEXT")
        last = con.execute("SELECT hash FROM audit ORDER BY rowid DESC LIMIT 1").fetchone()
        if last is not None and last[0]:
            self.last_hash: str = last[0]
        else:
            self.last_hash = genesis_hash(_first_run_id(con) or "")

    def link(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """`row` (an `AuditRecord.as_row()`) with its prev_hash and hash, for INSERT."""
        stored = _as_stored(row)
        digest = row_hash(self.last_hash, dict(zip(CONTENT_COLUMNS, stored, strict=True)))
        linked = (*stored, self.last_hash, digest)
        self.last_hash = digest
        return linked

    def link_all(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [self.link(row) for row in rows]


def _first_run_id(con: sqlite3.Connection) -> str | None:
    try:
        row = con.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # no runs table
        return None
    return None if row is None else str(row[0])


class AuditTrailMissing(Exception):
    """The file has no audit table (or one without the hash chain): nothing to verify."""


@dataclass(frozen=True)
class AuditVerdict:
    """What `verify_audit` found. `rows` counts every row of the table; `first_bad_rowid` is
    the first row at which the chain breaks (None when intact); `reason` says how it breaks
    ("" when intact); `last_hash` is the hash of the last row (the genesis value for an empty
    trail): publish it to make a later rewrite of the whole chain detectable."""

    intact: bool
    rows: int
    first_bad_rowid: int | None
    reason: str
    last_hash: str = ""


def verify_audit(db_path: Path | str, expected_last_hash: str | None = None) -> AuditVerdict:
    """Recompute the chain of a historian file and name the first record where it breaks.

    Raises FileNotFoundError for a missing file and AuditTrailMissing for a file without an
    (chained) audit table. `expected_last_hash`, a value published earlier, also catches rows
    cut off the end and a chain rewritten from the start.
    """
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such historian file")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditTrailMissing(f"{path}: cannot open as SQLite: {exc}") from None
    try:
        try:
            columns = {r[1] for r in con.execute("PRAGMA table_info(audit)")}
        except sqlite3.DatabaseError as exc:
            raise AuditTrailMissing(f"{path}: not a historian file: {exc}") from None
        if not columns:
            raise AuditTrailMissing(f"{path}: no audit table (not a historian file, or a run "
                                    "recorded before the audit trail existed)")
        if not set(CHAIN_COLUMNS) <= columns:
            raise AuditTrailMissing(f"{path}: the audit table has no hash chain (recorded "
                                    "before the chain existed)")
        run_id = _first_run_id(con)
        rows = con.execute(f"SELECT rowid, {', '.join(COLUMNS)} FROM audit "
                           "ORDER BY rowid").fetchall()
    finally:
        con.close()
    expected_prev = genesis_hash(run_id or "")
    previous_rowid: int | None = None
    for rowid, *values in rows:
        content = dict(zip(CONTENT_COLUMNS, values[:len(CONTENT_COLUMNS)], strict=True))
        prev_hash, stored_hash = values[len(CONTENT_COLUMNS):]
        reason = None
        if prev_hash is None and stored_hash is None:
            reason = "the record has no hash (written before the chain existed, or forged)"
        elif prev_hash != expected_prev:
            if previous_rowid is None:
                reason = (f"prev_hash is not the genesis value of run {run_id!r}: a record "
                          "before it was deleted, or it was moved from another run")
            else:
                reason = (f"prev_hash does not match the hash of record {previous_rowid}: a "
                          "record was deleted, inserted or reordered here, or the one before "
                          "was rewritten with a new hash")
        else:
            try:
                actual = row_hash(prev_hash, content)
            except (TypeError, ValueError, UnicodeError):
                actual = None
            if actual != stored_hash:
                reason = "content does not match its hash: the record was changed"
        if reason is not None:
            return AuditVerdict(False, len(rows), rowid, reason, "")
        expected_prev = stored_hash
        previous_rowid = rowid
    if expected_last_hash is not None and expected_last_hash.strip().lower() != expected_prev:
        return AuditVerdict(False, len(rows), None,
                            f"the last hash is {expected_prev}, not the expected "
                            f"{expected_last_hash.strip()}: records were cut off the end, or "
                            "the chain was rewritten", expected_prev)
    return AuditVerdict(True, len(rows), None, "", expected_prev)


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
        rows = con.execute(f"SELECT {', '.join(CONTENT_COLUMNS)} FROM audit "
                           "ORDER BY rowid").fetchall()
    finally:
        con.close()
    return [dict(row) for row in rows]

