"""MQTT telemetry: throughput and publish-to-receive latency through Outbox + MqttPublisher.

A private Mosquitto on loopback (tests/plugins/mosquitto.py); an independent aiomqtt subscriber
(QoS 1, same process and event loop, so the numbers are a lower bound for the publisher alone).
- throughput: N telemetry messages of 8 readings appended and committed in batches of 100 as
  fast as the loop allows; messages/s and readings/s from the first append to the last receipt;
  every seq must arrive.
- latency: messages paced like ticks (each committed alone) at `rate_hz`; time from append to
  receipt, p50/p99.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from plugins.mosquitto import Broker

from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import Outbox
from controller.mqtt.publisher import MqttPublisher
from controller.mqtt.topics import LOST_PAYLOAD, Topics, status_payload, telemetry_payload
from drivers.wire.backoff import Backoff

T = Topics("bench")
CHANNELS = ["temperature_c", "do_pct_air", "ph", "viable_cells_per_ml", "glucose_mm",
            "lactate_mm", "volume_ml", "co2_pct"]


def payload(seq: int) -> bytes:
    readings = {c: (37.0 + seq * 1e-4 + i, "u", "good") for i, c in enumerate(CHANNELS)}
    return telemetry_payload(seq=seq, wall_ts=1.7e9 + seq, t_s=float(seq), readings=readings,
                             setpoints={"temperature": 37.0, "do": 40.0, "ph": 7.2},
                             outputs={"heater_pct": 10.0, "o2_pct": 21.0, "co2_pct": 5.0},
                             modes={"temperature": "auto", "do": "auto", "ph": "auto"})


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def _run(broker: Broker, db: Path, n: int, rate_hz: float | None) -> dict:
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    done = asyncio.Event()
    outbox = Outbox(db)
    pub = MqttPublisher(MqttSettings.from_url(broker.url, client_id=f"bench-{rate_hz}"), outbox,
                        will=(T.status, LOST_PAYLOAD),
                        birth=[(T.status, status_payload("running"), True)],
                        backoff=Backoff(0.05, 1.0))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bench-sub-{rate_hz}") as sub:
        await sub.subscribe(T.telemetry, qos=1)

        async def receive() -> None:
            async for m in sub.messages:
                seq = json.loads(m.payload)["seq"]  # type: ignore[arg-type]
                got.setdefault(seq, time.perf_counter())
                if len(got) == n:
                    done.set()

        rx = asyncio.create_task(receive())
        task = asyncio.create_task(pub.run())
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        for seq in range(1, n + 1):
            sent[seq] = time.perf_counter()
            outbox.append(T.telemetry, payload(seq))
            if rate_hz is not None:
                outbox.commit()
                await asyncio.sleep(1.0 / rate_hz)
            elif seq % 100 == 0:
                outbox.commit()
                await asyncio.sleep(0)
        outbox.commit()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 120)
        t1 = max(got.values()) if got else time.perf_counter()
        task.cancel()
        rx.cancel()
        await asyncio.gather(task, rx, return_exceptions=True)
    outbox.close()
    lat_ms = [(got[s] - sent[s]) * 1e3 for s in got]
    elapsed = t1 - t0
    return {
        "messages": n, "received": len(got), "lost": n - len(got),
        "in_order": sorted(got, key=got.__getitem__) == sorted(got),
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(len(got) / elapsed),
        "readings_per_s": round(len(got) * len(CHANNELS) / elapsed),
        "payload_bytes": len(payload(1)),
        "latency_ms_p50": round(_pct(lat_ms, 50), 2) if lat_ms else None,
        "latency_ms_p99": round(_pct(lat_ms, 99), 2) if lat_ms else None,
        "reconnects": pub.stats.reconnects,
    }


def bench_mqtt(n: int = 20_000, paced_n: int = 2_000, paced_hz: float = 200.0) -> dict:
    """Throughput (burst) and latency (paced) of Outbox + MqttPublisher to a local Mosquitto."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        try:
            burst = asyncio.run(_run(broker, Path(tmp) / "burst.db", n, None))
            paced = asyncio.run(_run(broker, Path(tmp) / "paced.db", paced_n, paced_hz))
        finally:
            broker.stop()
    return {"burst": burst, f"paced_{paced_hz:g}hz": paced}


if __name__ == "__main__":
    print(json.dumps(bench_mqtt(), indent=2))
