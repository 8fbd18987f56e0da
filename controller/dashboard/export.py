"""A run's records as CSV or Parquet, streamed: one table of the historian at a time (every
tick of every reactor by default; the events, setpoint changes, soft-sensor estimates, the
audit trail and the diagnostics on request).

Rows are read from SQLite in batches and written out batch by batch, so exporting a two-week
run (a million rows per reactor) holds one batch in memory, never the run. Both generators are
synchronous: the web framework runs them in a worker thread, off the event loop that carries
the live feed.
"""
from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from controller.report.run_db import open_run_db

BATCH_ROWS = 20_000
CHUNK_BYTES = 1 << 16
TABLES = ("ticks", "events", "setpoints", "estimates", "audit", "diagnostics")
"""The record tables one may export (the names are never taken from a request unchecked)."""
_ARROW_TYPES = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}


def _rows(db_path: Path, table: str) -> tuple[pa.Schema, Iterator[list[tuple]]]:
    """The table's schema, typed as the historian declared it, and its rows in batches: per
    reactor, in time, then in the order written (the audit trail's chain order)."""
    if table not in TABLES:
        raise ValueError(f"table {table!r}: allowed {', '.join(TABLES)}")
    con = open_run_db(db_path)
    declared = con.execute(f"PRAGMA table_info({table})").fetchall()
    schema = pa.schema([(row[1], _ARROW_TYPES.get(row[2].upper(), pa.string()))
                        for row in declared])
    cursor = con.execute(f"SELECT * FROM {table} ORDER BY reactor_id, t_s, rowid")

    def batches() -> Iterator[list[tuple]]:
        try:
            while batch := cursor.fetchmany(BATCH_ROWS):
                yield batch
        finally:
            con.close()

    return schema, batches()


def csv_chunks(db_path: Path, table: str = "ticks") -> Iterator[bytes]:
    """The header, then the rows, as UTF-8 CSV in chunks of a batch each."""
    schema, batches = _rows(db_path, table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(schema.names)
    yield buffer.getvalue().encode()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(batch)
        yield buffer.getvalue().encode()


def parquet_chunks(db_path: Path, table: str = "ticks") -> Iterator[bytes]:
    """A Parquet file, one row group per batch, spooled to a temporary file (the format's footer
    comes last) and streamed from there."""
    schema, batches = _rows(db_path, table)
    with tempfile.TemporaryFile() as spool:
        with pq.ParquetWriter(spool, schema) as writer:
            for batch in batches:
                arrays = [pa.array(col, type=field.type)
                          for col, field in zip(zip(*batch, strict=True), schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        spool.seek(0)
        while chunk := spool.read(CHUNK_BYTES):
            yield chunk
