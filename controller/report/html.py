"""The reports' HTML pieces: one stylesheet, escaping, numbers and tables, shared by the run
report (page.py) and the sweep's summary page (controller/sweep/page.py)."""
from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1040px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0; }
.note { color: #a60; }
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, fmt: str = ".4g") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else escape(value)
    return "n/a" if math.isnan(value) else format(value, fmt)


def html_table(header: Iterable[str] | None, rows: Iterable[Iterable[str]],
               numeric: set[int]) -> str:
    """An HTML table of cells that are already escaped; `numeric` columns align right."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table>{head}{body}</table>"
