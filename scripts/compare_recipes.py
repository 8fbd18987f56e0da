"""The shipped recipes compared over donor seeds, at 1 g and in microgravity (docs/recipes.md).

    .venv/bin/python scripts/compare_recipes.py --seeds 10 --workers 2 --period 5 \
        --rows runs/recipes.jsonl > table.md

Each run is the shipped config with `donor_variability = true` (each seed a different donor:
the emulator draws the donor's kinetic parameters from their ranges), the given `--seed`, and
microgravity off or on; `--period` replaces the control period (the shipped configs tick every
second; 5 s, the HIL configs' period, makes the 60 runs five times cheaper). Runs go to a
process pool, each in virtual time with its historian in a temporary folder. The table: mean
(min-max) of the total, CD34+ and primitive fold expansions, the medium fed (mL, measured by the
feed totaliser), the runs whose recipe completed, and the alarms raised (all runs together).
Each run's row is appended to `--rows` as it finishes, so an interrupted comparison goes on
where it stopped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from controller import clock
from controller.cli.logs import configure_logging
from controller.cli.main import apply_overrides
from controller.config import parse_config
from controller.runtime.run import Run, RunOptions

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("hsc_expansion.toml", "hsc_recipe_perfusion.toml", "hsc_recipe_dilution.toml")


def one_run(config_name: str, seed: int, microgravity: bool, period_s: float) -> dict[str, Any]:
    configure_logging("warning")
    text = (REPO / "configs" / config_name).read_text()
    for old, new in (("donor_variability = false", "donor_variability = true"),
                     ("microgravity = false", f"microgravity = {str(microgravity).lower()}"),
                     ("control_period_s = 1.0", f"control_period_s = {period_s}")):
        assert old in text, (config_name, old)
        text = text.replace(old, new)
    config = apply_overrides(parse_config(text), duration="14d", speed="max", seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = clock.run(Run(RunOptions(config=config, config_text=text,
                                           db_path=Path(tmp) / "run.sqlite")).execute(), None)
    reactor = next(iter(summary["reactors"].values()))
    return {"config": config_name, "seed": seed, "microgravity": microgravity,
            **reactor["product"], "feed_ml": reactor["delivery_ml"]["feed_ml_per_h"]["measured"],
            "recipe_state": (reactor["recipe"] or {}).get("state"),
            "alarms": [a["name"] for a in reactor["alarms"]]}


def table(rows: list[dict[str, Any]]) -> str:
    def spread(values: list[float], fmt: str) -> str:
        return (f"{statistics.mean(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})")

    lines = ["| recipe | gravity | total fold | CD34+ fold | primitive fold | medium fed, mL | "
             "completed | alarms raised |", "|---|---|---|---|---|---|---|---|"]
    for name in RECIPES:
        for micro in (False, True):
            group = [r for r in rows if r["config"] == name and r["microgravity"] is micro]
            if not group:
                continue
            alarms: dict[str, int] = {}
            for r in group:
                for alarm in r["alarms"]:
                    alarms[alarm] = alarms.get(alarm, 0) + 1
            raised = ", ".join(f"{a} ({n})" for a, n in sorted(alarms.items())) or "none"
            completed = sum(r["recipe_state"] == "complete" for r in group)
            lines.append(
                f"| {name.removesuffix('.toml')} | {'micro' if micro else '1 g'} | "
                f"{spread([r['total_fold_expansion'] for r in group], '.1f')} | "
                f"{spread([r['cd34_fold_expansion'] for r in group], '.1f')} | "
                f"{spread([r['primitive_fold_expansion'] for r in group], '.2f')} | "
                f"{spread([r['feed_ml'] for r in group], '.0f')} | "
                f"{completed}/{len(group)} | {raised} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--rows", type=Path, required=True,
                        help="every run's row, one JSON line each, appended as runs finish; "
                             "cases already there are not run again (resumable)")
    args = parser.parse_args()
    done = ([json.loads(line) for line in args.rows.read_text().splitlines() if line]
            if args.rows.exists() else [])
    have = {(r["config"], r["seed"], r["microgravity"]) for r in done}
    cases = [(name, seed, micro, args.period) for name in RECIPES
             for micro in (False, True) for seed in range(1, args.seeds + 1)
             if (name, seed, micro) not in have]
    rows = list(done)
    with ProcessPoolExecutor(args.workers) as pool, args.rows.open("a") as out:
        futures = [pool.submit(one_run, *case) for case in cases]
        for future in as_completed(futures):
            row = future.result()
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            print(f"{len(rows)}/{len(done) + len(cases)} {row['config']} seed {row['seed']}"
                  f"{' microgravity' if row['microgravity'] else ''}", file=sys.stderr)
    print(f"`{' '.join(['scripts/compare_recipes.py', *sys.argv[1:]])}`: {args.seeds} donor "
          f"seeds, 14 days, control period {args.period:g} s\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
