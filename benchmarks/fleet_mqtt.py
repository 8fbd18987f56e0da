"""A fleet in real time with MQTT: `bioreactor run --reactors N --speed 1 --mqtt URL` for a
given wall span against a private Mosquitto, counted by an independent `mosquitto_sub`.

Reports what issue 14's Done-when asks: skipped ticks, each reactor's p99 tick lateness (the
worst one), every telemetry message at the subscriber (no seq gap per reactor), each reactor's
status retained, the broker's client connections from the controller, and CPU (the run's
process tree, and the broker's).

    .venv/bin/python benchmarks/fleet_mqtt.py --reactors 1000 --seconds 60
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.mosquitto import Broker
from plugins.processes import BIN, LOOPBACK


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_fleet_mqtt(reactors: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp).start()
        try:
            out = tmp / "telemetry.txt"
            with out.open("w") as sink:
                sub = subprocess.Popen(
                    ["mosquitto_sub", "-h", LOOPBACK, "-p", str(broker.port), "-c", "-i",
                     "fleet-bench", "-q", "1", "-v", "-t", "bioreactor/+/telemetry"],
                    stdout=sink, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # a benchmark, not a test: let the subscriber subscribe
            broker_cpu0 = _cpu_s(broker.proc.pid)  # type: ignore[union-attr]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall0 = time.monotonic()
            run = subprocess.run(
                [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--reactors", str(reactors),
                 "--speed", "1", "--duration", f"{seconds:g}s", "--mqtt", broker.url,
                 "--run-id", "fleet", "--quiet", "--db", str(tmp / "runs" / "run.sqlite"),
                 "--summary-json", str(tmp / "summary.json")],
                capture_output=True, text=True)
            wall = time.monotonic() - wall0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if run.returncode != 0:
                raise RuntimeError(run.stderr[-2000:])
            summary = json.loads((tmp / "summary.json").read_text())
            sent = {rid: r["mqtt"]["telemetry_messages"] for rid, r in summary["reactors"].items()}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                lines = out.read_text().count("\n")
                if lines >= sum(sent.values()):
                    break
                time.sleep(0.5)
            broker_cpu = _cpu_s(broker.proc.pid) - broker_cpu0  # type: ignore[union-attr]
            sub.terminate()
            sub.wait()
            seqs: dict[str, set[int]] = {}
            for line in out.read_text().splitlines():
                topic, _, payload = line.partition(" ")
                seqs.setdefault(topic.split("/")[1], set()).add(json.loads(payload)["seq"])
            complete = sum(seqs.get(rid, set()) == set(range(1, n + 1)) for rid, n in sent.items())
            statuses = subprocess.run(
                ["mosquitto_sub", "-h", LOOPBACK, "-p", str(broker.port), "-v", "-t",
                 "bioreactor/+/status", "-C", str(reactors), "-W", "20"],
                capture_output=True, text=True).stdout.splitlines()
            done = sum('"state":"done"' in line for line in statuses)
            clients = sum("New client connected" in line and " as bioreactor-" in line
                          for line in broker.log().splitlines())
        finally:
            broker.stop()
    per = list(summary["reactors"].values())
    return {
        "reactors": reactors, "seconds": seconds, "wall_s": round(wall, 1),
        "skipped_ticks": sum(r["skipped_ticks"] for r in per),
        "ticks_per_reactor": summary["ticks"],
        "worst_p99_lateness_ms": round(1000 * max(r["tick_lateness_s"]["p99"] for r in per), 1),
        "median_reactor_p99_lateness_ms": round(1000 * sorted(
            r["tick_lateness_s"]["p99"] for r in per)[len(per) // 2], 1),
        "reactors_p99_over_20ms": sum(r["tick_lateness_s"]["p99"] > 0.020 for r in per),
        "worst_max_lateness_ms": round(1000 * max(r["tick_lateness_s"]["max"] for r in per), 1),
        "telemetry_sent": sum(sent.values()),
        "telemetry_received_distinct": sum(len(s) for s in seqs.values()),
        "reactors_with_every_seq": complete,
        "statuses_retained_done": done,
        "controller_connections": clients,
        "run_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                           1),
        "broker_cpu_s": round(broker_cpu, 1),
        "mqtt": summary["mqtt"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactors", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(bench_fleet_mqtt(args.reactors, args.seconds), indent=2))


if __name__ == "__main__":
    main()
