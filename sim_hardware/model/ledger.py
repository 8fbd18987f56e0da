"""The culture's mass-balance ledger: every amount fed, harvested, consumed and produced.

The model books each flux of a bio step here with the same floating-point numbers that update
its state, so `initial + fed - harvested - consumed + produced == current` holds to rounding.
An entry is a list `[initial, fed, harvested, consumed, produced]` in the model's internal units
(cells, umol, ng, mL); reports convert dissolved species to mmol. `viable_cells` is the sum of
the three populations (primitive, progenitor, differentiated), each also booked on its own; a
cell changing population is consumed in one and produced in the other. "harvested" counts
everything that left the chamber: harvest pump, leak and at-line samples.
"""
from __future__ import annotations

from collections.abc import Iterable

SPECIES = ("viable_cells", "dead_cells", "glucose", "glutamine", "lactate", "ammonia",
           "inhibitor", "bicarbonate", "volume", "contaminant_cells", "primitive_cells",
           "progenitor_cells", "differentiated_cells", "cytokine")
LEDGER_UNITS = {
    "viable_cells": "cells", "dead_cells": "cells", "glucose": "mmol", "glutamine": "mmol",
    "lactate": "mmol", "ammonia": "mmol", "inhibitor": "ng", "bicarbonate": "mmol",
    "volume": "mL", "contaminant_cells": "cells", "primitive_cells": "cells",
    "progenitor_cells": "cells", "differentiated_cells": "cells", "cytokine": "ng",
}
# Internal amounts of dissolved species are in umol (mM x mL); the ledger reports mmol.
_SCALE = {name: (1e-3 if unit == "mmol" else 1.0) for name, unit in LEDGER_UNITS.items()}


def open_ledger(amounts: Iterable[float]) -> dict[str, list[float]]:
    """Entries for each species, starting from `amounts` (in `SPECIES` order)."""
    return {s: [a, 0.0, 0.0, 0.0, 0.0] for s, a in zip(SPECIES, amounts, strict=True)}


def book(entry: list[float], fed: float, harvested: float, consumed: float,
         produced: float) -> None:
    entry[1] += fed
    entry[2] += harvested
    entry[3] += consumed
    entry[4] += produced


def ledger_report(entries: dict[str, list[float]], amounts: Iterable[float]
                  ) -> dict[str, dict[str, float | str]]:
    """Cumulative amounts per species: initial, fed, harvested, consumed, produced, current.

    Units: cells, mmol, ng (inhibitor) or mL (volume); "fed" includes the base pump,
    "harvested" everything that left the chamber (a leak too: `chamber_leak`; at-line samples).
    """
    out: dict[str, dict[str, float | str]] = {}
    for name, current in zip(SPECIES, amounts, strict=True):
        k = _SCALE[name]
        initial, fed, harvested, consumed, produced = entries[name]
        out[name] = {"unit": LEDGER_UNITS[name], "initial": initial * k, "fed": fed * k,
                     "harvested": harvested * k, "consumed": consumed * k,
                     "produced": produced * k, "current": current * k}
    return out


def balance_residuals(entries: dict[str, list[float]], amounts: Iterable[float]
                      ) -> dict[str, float]:
    """Relative residual of initial + fed - harvested - consumed + produced - current."""
    res = {}
    for name, current in zip(SPECIES, amounts, strict=True):
        initial, fed, harvested, consumed, produced = entries[name]
        scale = max(abs(initial) + abs(fed) + abs(produced), 1e-300)
        res[name] = (initial + fed - harvested - consumed + produced - current) / scale
    return res
