"""One reactor's part of the run summary (`--summary-json`, the console table)."""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from controller.runtime.reactor import Reactor

_PRODUCT_KEYS = ("total_fold_expansion", "cd34_fraction", "cd34_fold_expansion",
                 "primitive_fold_expansion")


def reactor_summary(reactor: Reactor, diagnostics: dict[str, float]) -> dict[str, Any]:
    counters = reactor.counters
    presence = reactor.presence
    return {
        "id": reactor.id,
        "device": reactor.config.device,
        "ticks": counters.ticks,
        "fold_expansion": diagnostics.get("fold_expansion"),
        "viable_cells_per_ml_final": diagnostics.get("viable_cells_per_ml"),
        # Product quality at the end of the run (emulator truth; None on real hardware).
        "product": {key: diagnostics.get(key) for key in _PRODUCT_KEYS},
        "soft_sensor": _soft_sensor(reactor),
        "boluses_done": reactor.schedule.boluses_done,
        "restarts": counters.restarts,
        "boluses_scheduled": len(reactor.schedule.boluses) + len(reactor.schedule.recipe_boluses),
        "boluses": [{"id": b.id, "channel": b.channel, "due_t_s": b.at_s,
                     "volume_ml": b.volume_ml, "commanded_ml": b.commanded_ml,
                     "delivered_ml": b.delivered_ml, "state": b.state}
                    for b in [*reactor.schedule.boluses, *reactor.schedule.recipe_boluses,
                              *reactor.schedule.ordered_boluses]],
        "delivery_ml": {pump: {"commanded": commanded_ml, "measured": measured_ml}
                        for pump, (commanded_ml, measured_ml)
                        in reactor.delivery.totals_ml.items()},
        "errors": {"read": counters.read_errors, "write": counters.write_errors,
                   "tick": counters.tick_errors},
        "comm_losses": counters.comm_losses,
        "link_faults": {"timeouts": counters.comm_timeouts,
                        "late_replies": counters.late_replies, "retries": counters.comm_retries},
        "skipped_ticks": counters.skipped_ticks,
        "mqtt": None if presence is None else presence.summary(),
        "alarms": sorted(
            [{"name": f.name, "priority": f.priority, "first_raised_t_s": f.t_s}
             for f in reactor.alarms.first_raised]
            + [{"name": name, "priority": priority, "first_raised_t_s": t_s}
               for name, (priority, t_s) in reactor.outside_alarms.first_raised.items()],
            key=lambda a: (a["first_raised_t_s"], a["name"])),
        "interlocks": [{"name": t.name, "t_s": t.t_s, "tripped": t.tripped, "event": t.event,
                        "by": t.by, "tripped_at_end": t.name in reactor.interlocks.tripped}
                       for t in reactor.interlocks.history],
        "standardisation": reactor.standards.summary(),
        "recipe": None if reactor.procedure is None else reactor.procedure.summary(),
        "tick_lateness_s": _percentiles(reactor.lateness_s),
        "loops": {
            loop.name: {
                "pv": loop.pv,
                "mv": loop.mv,
                "setpoint": loop.setpoint,
                "band": loop.stats.band,
                "within_band_fraction": loop.stats.within_band_fraction,
                "iae": loop.stats.iae,
                "max_abs_error": loop.stats.max_abs_error,
                "held_ticks": loop.stats.held,
            }
            for loop in reactor.loops
        },
    }


def _percentiles(values: deque[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p99 = np.percentile(np.fromiter(values, float, len(values)), [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(max(values)), "n": len(values)}


def _soft_sensor(reactor: Reactor) -> dict[str, Any] | None:
    """The estimator's accuracy against the device's truth (None without either)."""
    sensor = reactor.soft_sensor
    if sensor is None:
        return None
    accuracy = reactor.soft_sensor_score.summary(reactor.clock.now())
    return {"updates": sensor.updates,
            "late_results_dropped": 0 if sensor.filter is None else sensor.filter.too_late,
            **(accuracy or {"samples": 0})}
