"""The naive hand-written loop: the baseline a process engineer writes in an afternoon.

Every 1 s tick, in virtual time (no sleep): integrate the culture ODE (culture.py) over [t, t+1]
with `scipy.integrate.solve_ivp` (its defaults: RK45), read the three controlled values with a
little seeded sensor noise, step three `simple_pid.PID` loops (temperature -> heater, DO -> O2,
pH -> CO2) and insert one row into a SQLite file. Commits: every `--commit-every-s` simulated
seconds (default 60, what a user who has read that a commit per insert is slow does; 1 is a
commit per tick, the first thing a user writes). SQLite's defaults otherwise (rollback journal,
synchronous FULL).

It runs in its own venv (benchmarks/naive_loop/.venv, from requirements.txt; `make bench` makes
it), not the project's, and prints JSON {ticks, wall_s, us_per_tick, ...}.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from culture import INITIAL, STATE, rhs
from scipy.integrate import solve_ivp
from simple_pid import PID

SETPOINTS = {"temperature_c": 37.0, "do_pct_air": 25.0, "ph": 7.3}
NOISE = {"temperature_c": 0.01, "do_pct_air": 0.2, "ph": 0.002}


def controllers() -> tuple[PID, PID, PID]:
    """Hand-tuned gains; pH is reverse-acting (more CO2, lower pH), hence the negative gains."""
    heater = PID(20.0, 0.02, 0.0, setpoint=SETPOINTS["temperature_c"], sample_time=None,
                 output_limits=(0.0, 100.0))
    o2 = PID(0.5, 0.002, 0.0, setpoint=SETPOINTS["do_pct_air"], sample_time=None,
             output_limits=(0.0, 100.0))
    co2 = PID(-20.0, -0.02, 0.0, setpoint=SETPOINTS["ph"], sample_time=None,
              output_limits=(0.0, 20.0))
    return heater, o2, co2


def run(ticks: int, db: Path, commit_every_s: int, seed: int = 42) -> dict:
    rng = np.random.default_rng(seed)
    heater_pid, o2_pid, co2_pid = controllers()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS ticks (t_s REAL, x REAL, glucose REAL, lactate REAL,"
                " do REAL, temperature REAL, ph REAL, heater REAL, o2 REAL, co2 REAL)")
    y = list(INITIAL)
    heater, o2, co2 = 0.0, 21.0, 5.0
    started = time.perf_counter()
    for k in range(ticks):
        t = float(k)
        sol = solve_ivp(rhs, (t, t + 1.0), y, args=(heater, o2, co2))
        y = sol.y[:, -1].tolist()
        temp = y[4] + rng.normal(0.0, NOISE["temperature_c"])
        do = y[3] + rng.normal(0.0, NOISE["do_pct_air"])
        ph = y[5] + rng.normal(0.0, NOISE["ph"])
        heater = heater_pid(temp, dt=1.0)
        o2 = o2_pid(do, dt=1.0)
        co2 = co2_pid(ph, dt=1.0)
        con.execute("INSERT INTO ticks VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (t + 1.0, y[0], y[1], y[2], do, temp, ph, heater, o2, co2))
        if (k + 1) % commit_every_s == 0:
            con.commit()
    con.commit()
    wall_s = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM ticks").fetchone()[0]
    con.close()
    return {"ticks": ticks, "wall_s": round(wall_s, 3),
            "us_per_tick": round(wall_s / ticks * 1e6, 1), "commit_every_s": commit_every_s,
            "rows": rows, "final": {name: round(v, 4) for name, v in zip(STATE, y, strict=True)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=86_400, help="1 s ticks (86,400: a day)")
    parser.add_argument("--commit-every-s", type=int, default=60,
                        help="commit every this many ticks (1: every tick)")
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args()
    if args.ticks < 1 or args.commit_every_s < 1:
        parser.error("--ticks and --commit-every-s must be at least 1")
    if args.db is not None:
        print(json.dumps(run(args.ticks, args.db, args.commit_every_s)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args.ticks, Path(tmp) / "naive.sqlite", args.commit_every_s)))


if __name__ == "__main__":
    main()
