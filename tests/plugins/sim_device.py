"""The in-process emulated device (SimDriver) on a hand-driven clock, for device-level tests
of faults and hardware."""
from __future__ import annotations

from drivers import Quality, parse_device_url
from sim_hardware.inprocess.sim_driver import SimDriver

H = 3600.0


class FakeClock:
    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


async def make(faults: list | None = None, seed: int = 7,
               **options) -> tuple[SimDriver, FakeClock]:
    clock = FakeClock()
    opts = dict(options)
    if faults is not None:
        opts["faults"] = faults
    driver = SimDriver(parse_device_url("sim://"), now=clock, seed=seed, options=opts)
    await driver.connect()
    return driver, clock


async def trace(driver: SimDriver, clock: FakeClock, until_s: float, step_s: float = 60.0,
                channel: str = "temperature_c", commands: dict | None = None,
                ) -> list[tuple[float, float, float, Quality]]:
    """(t, reading, truth, quality) every step; `commands` written once at the start."""
    if commands:
        await driver.write(commands)
    out = []
    while clock.t_s + step_s <= until_s + 1e-9:
        clock.t_s += step_s
        r = (await driver.read())[channel]
        out.append((clock.t_s, r.value, getattr(driver.model, channel), r.quality))
    return out
