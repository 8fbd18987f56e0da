"""Reading a run's records while its controller is still writing them."""
from __future__ import annotations

import math
import sqlite3
from pathlib import Path


def count_rows(db: Path, sql: str, *params: object) -> int:
    """The first column of the first row of `sql` (a COUNT), or 0 while the database or its
    schema is still being created."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def periods_after_first_tick(db: Path, duration_s: float, period_s: float) -> range:
    """How many control periods a finished run can have had from the start of its ticking to its
    end: each must be a tick made or a tick skipped on record. Counted from the first tick,
    because connecting to a device over a wire takes simulated minutes at a high speed factor.
    The run counts from the moment it began ticking, a little before the first tick read its
    clock: at 3600x a loaded machine's fraction of a millisecond is most of a 1 s period, so
    the run may count one period more than the first tick's time gives (CI once had 86,239
    against 86,238). Hence a range of two."""
    with sqlite3.connect(db) as con:
        ((first_tick_s,),) = con.execute("SELECT MIN(t_s) FROM ticks")
    fewest = math.ceil((duration_s - first_tick_s) / period_s)
    return range(fewest, fewest + 2)
