"""Fleets of the default reactor in one daemon: `bioreactor run CONFIG --reactors N`, as run by a
user.

- virtual time (`--speed max`): the whole command's wall time (start-up included) over N reactors
  times the ticks of a fixed simulated span: wall time per reactor-tick (and CPU time per
  reactor-tick, the daemon's and its historian writer's, which a shared machine disturbs less).
  Issue 14's pair is 100 reactors over 1 simulated hour against 1 reactor over 1 simulated day
  (goal: at most 0.25x).
- real time (`--speed 1`, 60 s): the daemon's CPU (its own and its reaped children's, from
  wait4), each reactor's tick lateness (the run summary's `tick_lateness_s`: the worst and the
  median reactor's p99) and skipped ticks; optionally with `--mqtt` to a private Mosquitto on a
  free loopback port, where an independent `mosquitto_sub` (QoS 1) counts every telemetry
  message by topic `bioreactor/+/telemetry` and, halfway through and after the run, a fresh
  `mosquitto_sub --retained-only` counts the reactors whose `bioreactor/+/status` is retained.

Whatever `--mqtt` does inside the daemon (a connection per reactor, or one for all) is measured
the same way, at the broker. A run that fails is recorded (exit code, the tail of its stderr,
what reached the broker), not raised, so 1,000 reactors that do not fit still give a row.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from plugins.mosquitto import Broker, Subscriber
from plugins.processes import LOOPBACK
from plugins.waiting import wait_until

from drivers.contract.durations import parse_duration_s

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "hsc_expansion.toml"
BIOREACTOR = Path(sys.executable).parent / "bioreactor"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _run_fleet(config: Path, reactors: int, duration: str, speed: str, tmp: Path,
               mqtt_url: str | None = None, halfway: Any = None) -> dict[str, Any]:
    """One `bioreactor run --reactors N` in a child process: wall, CPU, exit and its summary.

    `halfway` (a callable) is called once, half the expected wall time in (real time only)."""
    summary_path = tmp / f"summary-{reactors}.json"
    cmd = [str(BIOREACTOR), "run", str(config), "--reactors", str(reactors), "--duration",
           duration, "--speed", speed, "--quiet", "--db", str(tmp / f"fleet-{reactors}.sqlite"),
           "--summary-json", str(summary_path)]
    if mqtt_url is not None:
        cmd += ["--mqtt", mqtt_url]
    stderr_path = tmp / f"stderr-{reactors}.txt"
    started = time.perf_counter()
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        halfway_result = None
        try:
            reaped: tuple[int, resource.struct_rusage] | None = None
            if halfway is not None:
                # Half the run's real-time duration, polled with wait4 so that a run ending
                # early is reaped here with its resource usage (Popen.wait would lose it).
                half_at = started + parse_duration_s(duration) / 2
                while reaped is None and time.perf_counter() < half_at:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        reaped = (status, usage)
                    else:
                        time.sleep(0.1)  # the run's own pace sets the halfway point
                if reaped is None:
                    halfway_result = halfway()
            if reaped is None:
                _, status, usage = os.wait4(proc.pid, 0)
            else:
                status, usage = reaped
            proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            raise
    wall_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "command": " ".join(["bioreactor", *cmd[1:]]), "exit_code": proc.returncode,
        "wall_s": round(wall_s, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "cpu_pct": round((usage.ru_utime + usage.ru_stime) / wall_s * 100, 1),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    if halfway_result is not None:
        result["halfway"] = halfway_result
    if proc.returncode != 0 or not summary_path.exists():
        result["stderr_tail"] = stderr_path.read_text()[-2000:]
        return result
    result["summary"] = json.loads(summary_path.read_text())
    return result


def virtual_time(config: Path, reactors: int, duration: str) -> dict[str, Any]:
    """Wall time per reactor-tick over `duration` in virtual time, start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        run = _run_fleet(config, reactors, duration, "max", Path(tmp))
    summary = run.pop("summary", None)
    if summary is None:
        return {"reactors": reactors, "duration": duration, **run}
    ticks = summary["ticks"]
    return {"reactors": reactors, "duration": duration, "ticks": ticks, **run,
            "run_wall_s": round(summary["wall_seconds"], 3),
            "us_per_reactor_tick": round(run["wall_s"] / (reactors * ticks) * 1e6, 2),
            "cpu_us_per_reactor_tick": round(run["cpu_s"] / (reactors * ticks) * 1e6, 2)}


def _lateness(summary: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Across the reactors: the worst and the median reactor's p99 lateness, skipped ticks, and
    the periods that passed before a reactor's first tick (start-up: counted neither as ticks
    nor as skipped, since the run counts periods from when it began ticking)."""
    reactors = list(summary["reactors"].values())
    periods = duration_s / summary["control_period_s"]
    p99_ms = [r["tick_lateness_s"]["p99"] * 1e3 for r in reactors if r["tick_lateness_s"]]
    max_ms = [r["tick_lateness_s"]["max"] * 1e3 for r in reactors if r["tick_lateness_s"]]
    return {
        "ticks_per_reactor_min": min(r["ticks"] for r in reactors),
        "ticks_per_reactor_max": max(r["ticks"] for r in reactors),
        "skipped_ticks": sum(r["skipped_ticks"] for r in reactors),
        "startup_periods_max": round(max(periods - r["ticks"] - r["skipped_ticks"]
                                         for r in reactors)),
        "p99_lateness_ms_worst_reactor": round(max(p99_ms), 2) if p99_ms else None,
        "p99_lateness_ms_median_reactor": round(statistics.median(p99_ms), 2) if p99_ms else None,
        "max_lateness_ms": round(max(max_ms), 2) if max_ms else None,
    }


def _seqs(subscriber: Subscriber) -> dict[str, set[int]]:
    """The telemetry seqs an independent subscriber received, by reactor id."""
    got: dict[str, set[int]] = defaultdict(set)
    for topic, payload in subscriber.topic_messages():
        got[topic.split("/")[1]].add(payload["seq"])
    return got


def retained_statuses(broker: Broker) -> dict[str, Any]:
    """A fresh subscriber's view: how many reactors have a retained status, and which states."""
    out = subprocess.run(
        ["mosquitto_sub", "-h", LOOPBACK, "-p", str(broker.port), "-t", "bioreactor/+/status",
         "-v", "--retained-only", "-W", "3"], capture_output=True, text=True, timeout=60).stdout
    states: dict[str, str] = {}
    for line in out.splitlines():
        topic, _, payload = line.partition(" ")
        states[topic.split("/")[1]] = json.loads(payload).get("state", "?")
    counts: dict[str, int] = defaultdict(int)
    for state in states.values():
        counts[state] += 1
    return {"reactors_with_retained_status": len(states), "states": dict(counts)}


def _broker_cpu_s(broker: Broker) -> float | None:
    if broker.proc is None:
        return None
    fields = Path(f"/proc/{broker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def real_time(config: Path, reactors: int, duration: str, mqtt: bool) -> dict[str, Any]:
    """Speed 1 for `duration`: CPU, lateness, skipped ticks; with MQTT, what the broker got."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not mqtt:
            run = _run_fleet(config, reactors, duration, "1", tmp)
            summary = run.pop("summary", None)
            return {"reactors": reactors, "mqtt": False, **run,
                    **(_lateness(summary, parse_duration_s(duration)) if summary else {})}
        broker = Broker(tmp).start()
        counter = None
        try:
            counter = Subscriber(broker, "bioreactor/+/telemetry", tmp / "telemetry.txt",
                                 with_topics=True)
            run = _run_fleet(config, reactors, duration, "1", tmp, mqtt_url=broker.url,
                             halfway=lambda: retained_statuses(broker))
            summary = run.pop("summary", None)
            expected = _expected_telemetry(summary) if summary else {}

            def all_arrived() -> bool:
                got = _seqs(counter)
                return all(got.get(r, set()) >= set(range(1, n + 1))
                           for r, n in expected.items())

            with contextlib.suppress(AssertionError):
                wait_until(all_arrived, 60.0, "every telemetry message at the subscriber", 0.5)
            got = _seqs(counter)
            missing = {r: n - len(got.get(r, set()) & set(range(1, n + 1)))
                       for r, n in expected.items()}
            broker_log = broker.log()
            result = {
                "reactors": reactors, "mqtt": True, **run,
                **(_lateness(summary, parse_duration_s(duration)) if summary else {}),
                "telemetry_expected": sum(expected.values()),
                "telemetry_received": sum(len(s) for s in got.values()),
                "reactors_missing_telemetry": sum(1 for m in missing.values() if m),
                "telemetry_missing": sum(missing.values()),
                "after": retained_statuses(broker),
                "broker_cpu_s": _broker_cpu_s(broker),
                "broker_connections_logged": broker_log.count("New client connected"),
                "broker_errors": [line for line in broker_log.splitlines()
                                  if "rror" in line or "refus" in line.lower()][:5],
            }
            return result
        finally:
            if counter is not None:
                counter.close()
            broker.stop()


def _expected_telemetry(summary: dict[str, Any]) -> dict[str, int]:
    """Telemetry messages each reactor says it made (its summary's mqtt count, else its ticks)."""
    expected = {}
    for reactor_id, reactor in summary["reactors"].items():
        mqtt = reactor.get("mqtt") or {}
        expected[reactor_id] = int(mqtt.get("telemetry_messages", reactor["ticks"]))
    return expected


FULL_SPANS = {1: "1d", 10: "6h", 100: "1h", 1000: "6m"}
"""Simulated spans of the virtual-time runs: 1 reactor over a day and 100 over an hour are issue
14's pair; the others keep each run near a minute of the machine."""
QUICK_SPANS = {1: "1h", 10: "6m", 100: "6m", 1000: "1m"}


def batching_pair(virtual: list[dict[str, Any]]) -> dict[str, Any] | None:
    """100 reactors' wall time per reactor-tick over one reactor's (goal <= 0.25: batching pays).

    Over the spans the runs had (issue 14's pair only with the full spans: 1 d and 1 h)."""
    by_count = {v["reactors"]: v for v in virtual if "us_per_reactor_tick" in v}
    if 1 not in by_count or 100 not in by_count:
        return None
    one, hundred = by_count[1], by_count[100]
    return {"one_reactor": one["duration"], "hundred_reactors": hundred["duration"],
            "ratio": round(hundred["us_per_reactor_tick"] / one["us_per_reactor_tick"], 3),
            "cpu_ratio": round(hundred["cpu_us_per_reactor_tick"]
                               / one["cpu_us_per_reactor_tick"], 3),
            "goal_ratio": 0.25}


def bench_fleet(config: Path = DEFAULT_CONFIG, *, quick: bool = False,
                real_time_s: float = 60.0, counts: tuple[int, ...] = (1, 10, 100, 1000),
                mqtt: bool = True, parts: tuple[str, ...] = ("virtual", "real")) -> dict[str, Any]:
    """Virtual-time cost per reactor-tick, issue 14's pair, and real-time runs with/without MQTT.

    `quick`: shorter spans (QUICK_SPANS) and at most 10 s of real time."""
    out: dict[str, Any] = {}
    if "virtual" in parts:
        spans = QUICK_SPANS if quick else FULL_SPANS
        virtual = [virtual_time(config, n, spans.get(n, "1h")) for n in counts]
        out["virtual_time"] = virtual
        out["batching_pair"] = batching_pair(virtual)
    if "real" in parts:
        rt = f"{min(real_time_s, 10.0) if quick else real_time_s:g}s"
        out["real_time_duration"] = rt
        out["real_time"] = [real_time(config, n, rt, with_mqtt)
                            for with_mqtt in ([False, True] if mqtt else [False])
                            for n in counts]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--quick", action="store_true", help="short spans, 10 s of real time")
    parser.add_argument("--real-time-s", type=float, default=60.0,
                        help="seconds of each real-time run (default 60)")
    parser.add_argument("--reactors", type=int, nargs="+", default=[1, 10, 100, 1000],
                        help="fleet sizes (default 1 10 100 1000)")
    parser.add_argument("--no-mqtt", action="store_true", help="skip the runs with --mqtt")
    parser.add_argument("--only", choices=["virtual", "real"],
                        help="only the virtual-time or only the real-time part")
    args = parser.parse_args()
    if args.real_time_s <= 0 or min(args.reactors) < 1:
        parser.error("--real-time-s must be above 0 and every --reactors at least 1")
    parts = ("virtual", "real") if args.only is None else (args.only,)
    out = bench_fleet(args.config, quick=args.quick, real_time_s=args.real_time_s,
                      counts=tuple(args.reactors), mqtt=not args.no_mqtt, parts=parts)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
