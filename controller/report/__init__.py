"""The run report: a static HTML page with plots, built from one historian SQLite file.

`write_report(db_path, out_dir) -> Path` (of index.html) is the entry point. Three modules, one
step each: `run_db` reads the run file (its readers are public, for notebooks and tests),
`plots` draws the PNGs, `page` writes the HTML around them.
"""
from controller.report.page import render_html, write_report
from controller.report.plots import first_marks
from controller.report.run_db import (
    EVENT_LIMIT,
    Events,
    PhaseSpan,
    RecipeTimeline,
    Run,
    bucket_ticks,
    bucket_ticks_parallel,
    loop_band,
    open_run_db,
    read_marks,
    read_recipe,
    read_run,
    read_samples,
)

__all__ = ["EVENT_LIMIT", "Events", "PhaseSpan", "RecipeTimeline", "Run", "bucket_ticks",
           "bucket_ticks_parallel", "first_marks", "loop_band", "open_run_db", "read_marks",
           "read_recipe", "read_run", "read_samples", "render_html", "write_report"]
