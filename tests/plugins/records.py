"""Reading a run's records while its controller is still writing them."""
from __future__ import annotations

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
