"""A run's records (every tick of every reactor, the `ticks` table) as CSV or Parquet, streamed.

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


def _rows(db_path: Path) -> tuple[list[str], Iterator[list[tuple]]]:
    con = open_run_db(db_path)
    cursor = con.execute("SELECT * FROM ticks ORDER BY reactor_id, t_s")
    columns = [d[0] for d in cursor.description]

    def batches() -> Iterator[list[tuple]]:
        try:
            while batch := cursor.fetchmany(BATCH_ROWS):
                yield batch
        finally:
            con.close()

    return columns, batches()


def csv_chunks(db_path: Path) -> Iterator[bytes]:
    """The header, then the rows, as UTF-8 CSV in chunks of a batch each."""
    columns, batches = _rows(db_path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    yield buffer.getvalue().encode()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(batch)
        yield buffer.getvalue().encode()


def _schema(columns: list[str]) -> pa.Schema:
    """Typed as the historian types them: text id, integer quality codes, floats otherwise."""
    return pa.schema([(c, pa.string() if c == "reactor_id" else
                       pa.int64() if c.endswith("_q") else pa.float64()) for c in columns])


def parquet_chunks(db_path: Path) -> Iterator[bytes]:
    """A Parquet file, one row group per batch, spooled to a temporary file (the format's footer
    comes last) and streamed from there."""
    columns, batches = _rows(db_path)
    schema = _schema(columns)
    with tempfile.TemporaryFile() as spool:
        with pq.ParquetWriter(spool, schema) as writer:
            for batch in batches:
                arrays = [pa.array(col, type=field.type)
                          for col, field in zip(zip(*batch, strict=True), schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        spool.seek(0)
        while chunk := spool.read(CHUNK_BYTES):
            yield chunk
