"""A run's summary (`bioreactor run --summary-json`) as the sweep table's metric columns: one
row per reactor (one row per run for a single-reactor config)."""
from __future__ import annotations

from typing import Any

MEDIUM_PUMP = "feed_ml_per_h"
"""The pump that feeds fresh medium; its measured total is the medium the culture used."""

PRODUCT_COLUMNS = {"total_fold": "total_fold_expansion", "cd34_fold": "cd34_fold_expansion",
                   "primitive_fold": "primitive_fold_expansion"}
BAND_PREFIX = "in_band_"
"""`in_band_<loop>`: the fraction of judged ticks the loop kept its PV within its band."""


def reactor_metrics(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per reactor: product, bands, alarms and interlocks counted, medium, recipe state."""
    rows = []
    for reactor_id, part in summary["reactors"].items():
        product = part.get("product") or {}
        row: dict[str, Any] = {"reactor": reactor_id}
        for column, key in PRODUCT_COLUMNS.items():
            row[column] = product.get(key)
        for name, loop in part["loops"].items():
            row[BAND_PREFIX + name] = loop["within_band_fraction"]
        alarms = part["alarms"]
        row["alarms_raised"] = len(alarms)
        row["alarm_names"] = " ".join(sorted({a["name"] for a in alarms}))
        tripped = [t for t in part["interlocks"] if t["tripped"]]
        row["interlocks_tripped"] = len(tripped)
        row["interlock_names"] = " ".join(sorted({t["name"] for t in tripped}))
        medium = part["delivery_ml"].get(MEDIUM_PUMP)
        row["medium_ml"] = None if medium is None else medium["measured"]
        recipe = part.get("recipe")
        row["recipe_state"] = None if recipe is None else recipe["state"]
        rows.append(row)
    return rows
