"""One simulated day of the default culture, ours against the naive hand-written loop, in turn.

Ours: `bioreactor run configs/hsc_expansion.toml --duration 1d --quiet --db X` as a user types it,
timed end to end (interpreter start-up, config, run, records drained), in a child process.
The naive loop (benchmarks/naive_loop/): scipy `solve_ivp` per tick, three simple-pid loops, one
SQLite insert a tick, in its own venv, on the same tick count, committing every 60 s of
simulated time (and, for reference, a commit every tick over 600 ticks). Issue 14's goal: ours at
most 0.2x the naive loop's time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "hsc_expansion.toml"
NAIVE_DIR = Path(__file__).resolve().parent / "naive_loop"
NAIVE_PYTHON = NAIVE_DIR / ".venv" / "bin" / "python"
BIOREACTOR = Path(sys.executable).parent / "bioreactor"


def time_ours(config: Path, duration: str, extra: list[str] | None = None) -> dict[str, Any]:
    """`bioreactor run CONFIG --duration D --quiet --db X`: the whole command's wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [str(BIOREACTOR), "run", str(config), "--duration", duration, "--quiet",
               "--db", str(Path(tmp) / "ours.sqlite"), "--summary-json", str(summary_path),
               *(extra or [])]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall_s = time.perf_counter() - started
        summary = json.loads(summary_path.read_text())
    return {"command": " ".join(["bioreactor", *cmd[1:]]), "wall_s": round(wall_s, 3),
            "run_wall_s": round(summary["wall_seconds"], 3), "ticks": summary["ticks"],
            "summary": summary}


def time_naive(ticks: int, commit_every_s: int = 60) -> dict[str, Any]:
    """The naive loop in its own venv; its own JSON plus the whole command's wall time."""
    if not NAIVE_PYTHON.exists():
        raise SystemExit(f"error: {NAIVE_PYTHON} is missing: `make naive-venv` makes it "
                         f"(a venv from {NAIVE_DIR / 'requirements.txt'})")
    cmd = [str(NAIVE_PYTHON), str(NAIVE_DIR / "naive_loop.py"), "--ticks", str(ticks),
           "--commit-every-s", str(commit_every_s)]
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    result["command_wall_s"] = round(time.perf_counter() - started, 3)
    return result


def bench_naive_vs_ours(config: Path = DEFAULT_CONFIG, duration: str = "1d",
                        per_tick_commit_ticks: int = 600) -> dict[str, Any]:
    """Ours, then the naive loop on the same tick count; the ratio of whole-command times."""
    ours = time_ours(config, duration)
    ours.pop("summary")
    ticks = ours["ticks"]
    naive = time_naive(ticks)
    naive_per_tick_commit = time_naive(per_tick_commit_ticks, commit_every_s=1)
    return {
        "duration": duration, "ticks": ticks,
        "ours": {**ours, "us_per_tick": round(ours["wall_s"] / ticks * 1e6, 1)},
        "naive_commit_every_60s": naive,
        "naive_commit_every_tick": naive_per_tick_commit,
        "ratio_ours_to_naive": round(ours["wall_s"] / naive["command_wall_s"], 3),
        "goal_ratio": 0.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--duration", default="1d")
    args = parser.parse_args()
    print(json.dumps(bench_naive_vs_ours(args.config, args.duration), indent=2))


if __name__ == "__main__":
    main()
