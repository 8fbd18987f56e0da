"""The sweep's progress line when piped to a file: a plain line per finished run."""
from __future__ import annotations

import io

from controller.cli.console import SweepProgressLine


def test_a_line_per_run_and_one_for_the_runs_found_finished() -> None:
    stream = io.StringIO()  # not a terminal
    progress = SweepProgressLine(stream)
    progress(2, 5, {})  # two runs found finished by an earlier sweep
    progress(3, 5, {"run_id": "abc", "status": "ok"})
    progress(4, 5, {"run_id": "def", "status": "failed"})
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[" + "#" * 12 + "." * 18 + "] 2/5 runs")
    assert lines[0].endswith("(found finished in the output folder)")
    assert "3/5 runs  ~" in lines[1] and lines[1].endswith("left  last: abc ok")
    assert lines[2].endswith("last: def failed")
