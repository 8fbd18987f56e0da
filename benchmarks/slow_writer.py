"""A fleet in real time whose historian writer runs slowly: stopped and continued in turn (by
default 95 ms stopped, 5 ms running), as a process on a disk that answers, but slowly. Measures
what the supervision makes of it: writers taken for hung, the controller's memory, the ticks'
lateness, the rows on record and those counted as dropped.

Usage: python benchmarks/slow_writer.py [--reactors 1000] [--speed 1] [--duration-s 120]
       [--slow-from-s 15] [--slow-until-s 105] [--stopped-s 0.095] [--running-s 0.005]
       [--tree OTHER_CHECKOUT] [--out DIR]     (--slow-*-s: wall seconds from the start)
Not in `make bench`: a fault's cost, measured by hand (docs/benchmarks.md, "A writer on a slow
disk"). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactors", type=int, default=1000)
    parser.add_argument("--speed", default="1", help="'max' (virtual time) or a factor")
    parser.add_argument("--duration-s", type=float, default=120.0,
                        help="of the run's clock (simulated seconds)")
    parser.add_argument("--slow-from-s", type=float, default=15.0)
    parser.add_argument("--slow-until-s", type=float, default=105.0)
    parser.add_argument("--stopped-s", type=float, default=0.095)
    parser.add_argument("--running-s", type=float, default=0.005)
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="another checkout's sources, for an A/B comparison")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="slow-writer-"))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run.sqlite", "summary.json"):
        (out / name).unlink(missing_ok=True)
    command = [sys.executable, "-m", "controller.cli.main", "run",
               str(REPO / "configs/hsc_expansion.toml"), "--reactors", str(args.reactors),
               "--speed", args.speed, "--duration", f"{args.duration_s:.0f}s", "--quiet",
               "--db", str(out / "run.sqlite"), "--summary-json", str(out / "summary.json")]
    started = time.monotonic()
    with open(out / "out.txt", "wb") as stdout, open(out / "err.txt", "wb") as stderr:
        # Run from `out`: from the repository, `-m` would import the repository's sources
        # (the working directory comes first on sys.path), whatever the PYTHONPATH.
        controller = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=out,
                                      env={**os.environ, "PYTHONPATH": str(args.tree)})
    rss_mb: list[float] = []
    done = threading.Event()
    throttle = threading.Thread(target=_throttle, daemon=True, args=(
        controller.pid, started, args, done))
    throttle.start()
    try:
        while controller.poll() is None:
            rss_mb.append(_rss_mb(controller.pid))
            if time.monotonic() - started > 1800:
                controller.kill()
            time.sleep(1.0)  # a sampling period, not a wait for a condition
    finally:
        done.set()
        throttle.join()
    wall_s = time.monotonic() - started
    errors = (out / "err.txt").read_text(errors="replace")
    result = {
        "tree": str(args.tree), "reactors": args.reactors, "speed": args.speed,
        "duration_s": args.duration_s,
        "slow": f"{args.stopped_s:g} s stopped, {args.running_s:g} s running, from "
                f"{args.slow_from_s:g} to {args.slow_until_s:g} s",
        "exit_code": controller.returncode, "wall_s": round(wall_s, 1),
        "error": errors.strip().splitlines()[-1] if controller.returncode else None,
        "controller_rss_mb_max": max(rss_mb, default=0.0),
        "controller_rss_mb_at_slow_start": rss_mb[int(args.slow_from_s)] if len(rss_mb) >
        args.slow_from_s else None,
        **_records(out / "run.sqlite"), **_lateness(out / "summary.json"), "out": str(out),
    }
    print(json.dumps(result, indent=1))


def _throttle(controller_pid: int, started: float, args: argparse.Namespace,
              done: threading.Event) -> None:
    """Stops and continues whichever writer is the controller's now (it may be replaced)."""
    done.wait(max(0.0, args.slow_from_s - (time.monotonic() - started)))
    while not done.is_set() and time.monotonic() - started < args.slow_until_s:
        writer = _writer_pid(controller_pid)
        if writer is None:
            done.wait(args.running_s)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(writer, signal.SIGSTOP)
            done.wait(args.stopped_s)
            os.kill(writer, signal.SIGCONT)
        done.wait(args.running_s)


def _writer_pid(controller_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            if parent == controller_pid and state != "Z" and \
                    b"record_writer" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _records(path: Path) -> dict[str, object]:
    if not path.exists():
        return {"ticks_on_record": None}
    with sqlite3.connect(path) as con:
        ticks, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT reactor_id || ':' || t_s) FROM ticks").fetchone()
        events = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        alarms = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'alarm' AND message LIKE 'historian%' "
            "ORDER BY rowid")]
    return {"ticks_on_record": ticks, "ticks_distinct": distinct, "events_on_record": events,
            "writers_failed": sum(m.startswith("historian writer failed") for m in alarms),
            "historian_alarms": [m[:120] for m in alarms[:4]]}


def _lateness(path: Path) -> dict[str, object]:
    if not path.exists():
        return {"summary": None}
    reactors = list(json.loads(path.read_text())["reactors"].values())
    p99_ms = sorted(r["tick_lateness_s"]["p99"] * 1e3 for r in reactors if r["tick_lateness_s"])
    return {"skipped_ticks": sum(r["skipped_ticks"] for r in reactors),
            "p99_lateness_ms_worst": round(p99_ms[-1], 1) if p99_ms else None,
            "p99_lateness_ms_median": round(p99_ms[len(p99_ms) // 2], 1) if p99_ms else None,
            "reactors_with_historian_down": sum(
                any(a["name"] == "historian_down" for a in r["alarms"]) for r in reactors)}


if __name__ == "__main__":
    main()
