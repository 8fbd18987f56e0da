"""Benchmarks over a real wire: the emulated chamber served over Modbus TCP in its own process.

- round trip: one full driver `read()` (every sensor, one FC4 request), p50/p99 on loopback;
- tick jitter: a real-time run (speed 1) of the Modbus TCP HIL config at 1 Hz and at 10 Hz;
  lateness of each tick's start against its schedule, p50/p99/max.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from drivers import parse_device_url
from drivers.contract.registry import driver_factory

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIG = REPO / "configs" / "hil_modbus_tcp.toml"


class Emulator:
    """`bioreactor emulate` on a free loopback port, in real time, stopped on exit."""

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [BIN / "bioreactor", "emulate", str(CONFIG), "--listen",
             "modbus-tcp://127.0.0.1:0", "--speed", "1", "--comm-timeout", "10"],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"at (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line!r}")
        return match.group(1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def _round_trips(url: str, n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    address = parse_device_url(url)
    driver = driver_factory(address.scheme)(address, now=loop.time, seed=0, options={})
    await driver.connect()
    samples = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            await driver.read()
            samples.append(time.perf_counter() - started)
    finally:
        await driver.close()
    return samples


def bench_round_trip(n: int = 2000) -> dict[str, Any]:
    with Emulator() as url:
        samples = np.array(asyncio.run(_round_trips(url, n))) * 1e6
    p50, p99 = np.percentile(samples, [50, 99])
    return {"requests": n, "read_p50_us": round(float(p50)), "read_p99_us": round(float(p99))}


def bench_jitter(period_s: float, duration_s: float) -> dict[str, Any]:
    with Emulator() as url, tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        config_path = Path(tmp) / "config.toml"
        config_path.write_text(CONFIG.read_text()
                               .replace("control_period_s = 5.0", f"control_period_s = {period_s}")
                               .replace('speed = "600"', 'speed = "1"'))
        subprocess.run(
            [BIN / "bioreactor", "run", str(config_path), "--device", url, "--duration",
             f"{duration_s}s", "--quiet", "--db", str(Path(tmp) / "run.sqlite"),
             "--summary-json", str(summary_path)],
            check=True, capture_output=True, timeout=duration_s * 3 + 60,
        )
        reactor = json.loads(summary_path.read_text())["reactors"]["hsc-1"]
    lateness = reactor["tick_lateness_s"]
    return {
        "rate_hz": round(1 / period_s, 3),
        "ticks": reactor["ticks"],
        "skipped_ticks": reactor["skipped_ticks"],
        "jitter_p50_ms": round(lateness["p50"] * 1e3, 3),
        "jitter_p99_ms": round(lateness["p99"] * 1e3, 3),
        "jitter_max_ms": round(lateness["max"] * 1e3, 3),
    }


def main() -> None:
    print(json.dumps({
        "modbus_tcp_round_trip": bench_round_trip(),
        "tick_jitter_1hz": bench_jitter(1.0, 60.0),
        "tick_jitter_10hz": bench_jitter(0.1, 60.0),
    }, indent=2))


if __name__ == "__main__":
    main()
