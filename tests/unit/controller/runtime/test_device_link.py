"""The device link after a silence: a device whose comm-loss watchdog fired behind the
controller's back (a stalled host, a link that was down) has every output written again."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.clock import Clock
from controller.runtime.device_link import DeviceLink, ReactorCounters
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from drivers import CommTimeoutError, DeviceStatus, Driver, Reading


class Records:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def record_event(self, reactor_id: str, t_s: float, kind: str, message: str,
                     data: Mapping[str, Any] | None = None) -> None:
        self.events.append((kind, message))


class WallClock(Clock):
    """The clock's wall time set by the test; its clock time is not used here."""

    def __init__(self) -> None:
        super().__init__()
        self.wall_s = 0.0

    def wall_monotonic(self) -> float:  # type: ignore[override]
        return self.wall_s


class Device(Driver):
    def __init__(self) -> None:
        self.status = DeviceStatus.RUNNING
        self.status_reads = 0
        self.writes: list[dict[str, float]] = []

    async def connect(self) -> None: ...
    async def close(self) -> None: ...

    async def read(self) -> dict[str, Reading]:
        return {}

    async def read_outputs(self) -> dict[str, float]:
        return {"heater_relay": 1.0, "feed_ml_per_h": 2.0}

    async def write(self, outputs: Mapping[str, float]) -> None:
        self.writes.append(dict(outputs))

    async def heartbeat(self) -> None:
        self.status = DeviceStatus.RUNNING  # the heartbeat clears COMM_LOSS_SAFE, as devices do

    async def read_status(self) -> DeviceStatus:
        self.status_reads += 1
        return self.status


def link() -> tuple[DeviceLink, Device, WallClock, Records, OutsideAlarms]:
    device, clock, records = Device(), WallClock(), Records()
    journal = ReactorJournal("r1", records)  # type: ignore[arg-type]
    outside = OutsideAlarms(journal, on_change=lambda: None)
    return (DeviceLink(device, clock, journal, ReactorCounters(), control_period_s=1.0,
                       outside=outside), device, clock, records, outside)


async def test_beats_a_second_apart_never_read_the_status() -> None:
    dl, device, clock, _, _ = link()
    for beat in range(5):
        clock.wall_s = float(beat)
        await dl.heartbeat(float(beat))
    assert device.status_reads == 0


async def test_a_silence_with_the_device_still_running_changes_nothing() -> None:
    dl, device, clock, records, outside = link()
    await dl.connect()
    await dl.heartbeat(0.0)
    clock.wall_s = 3.0
    await dl.heartbeat(3.0)
    assert device.status_reads == 1
    assert dl.written and not records.events and not outside.standing()


async def test_a_device_that_went_safe_meanwhile_gets_every_output_again() -> None:
    dl, device, clock, records, outside = link()
    await dl.connect()
    await dl.heartbeat(0.0)
    await dl.write_changed({"heater_relay": 1.0, "feed_ml_per_h": 2.0}, 0.0)
    assert device.writes == []  # the device holds them already
    device.status = DeviceStatus.RUNNING | DeviceStatus.COMM_LOSS_SAFE  # its watchdog fired
    clock.wall_s = 6.0
    await dl.heartbeat(6.0)
    await dl.write_changed({"heater_relay": 1.0, "feed_ml_per_h": 2.0}, 6.0)
    assert device.writes == [{"heater_relay": 1.0, "feed_ml_per_h": 2.0}]
    assert records.events[0] == (
        "device", "device went to its safe state: no heartbeat reached it for 6.0 s (its "
        "comm-loss watchdog); every output is written again")
    assert outside.standing() == [("device_went_safe", "medium")]
    clock.wall_s = 7.0
    await dl.heartbeat(7.0)  # the next beat on time: no second look, no second alarm
    assert device.status_reads == 1 and len(records.events) == 2  # the event and the alarm


async def test_a_trip_is_reported_once_though_the_heartbeat_after_it_fails() -> None:
    dl, device, clock, records, _ = link()
    await dl.connect()
    await dl.heartbeat(0.0)
    device.status = DeviceStatus.RUNNING | DeviceStatus.COMM_LOSS_SAFE

    async def no_reply() -> None:
        raise CommTimeoutError("heartbeat: no reply")

    device.heartbeat = no_reply  # type: ignore[method-assign]
    for t in (6.0, 7.0):
        clock.wall_s = t
        await dl.heartbeat(t)
    assert device.status_reads == 2  # looked again: the device is still safe
    went_safe = [m for kind, m in records.events if kind == "device"]
    assert len(went_safe) == 1
