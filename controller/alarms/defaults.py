"""The alarms every reactor gets unless its config says otherwise, with why each limit is what
it is (`default_alarms`). Pure: config models in, config models out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.alarms.spec import AlarmConfig

TEMPERATURE_HIGH_C = 39.0
COMM_ERRORS_LIMIT = 0.05
"""Share of failed reads over 10 min that raises comm_errors."""
PH_LOW = 6.9
PH_HIGH = 7.6
VOLUME_RATE_LIMIT_ML_PER_H = 0.5
VOLUME_RATE_WINDOW_S = 3600.0
VOLUME_RATE_ON_DELAY_S = 5400.0
LIMIT_ALARMS = frozenset({"temperature_high", "ph_low", "ph_high"})
"""The absolute-limit alarms: a loop's setpoint must lie strictly inside the ones in effect
(the default or a `[[reactor.alarm]]` of the same name), or the alarm would stand all run; the
config refuses it (controller/config/safety_check.py)."""


def default_alarms(loops: Mapping[str, Any], *,
                   check_setpoints: bool = True) -> list[AlarmConfig]:
    """Sensible alarms for the control loops `{name: (pv, setpoint, band)}` (or LoopConfigs).

    A setpoint outside the default absolute limits is a ValueError unless `check_setpoints` is
    False (the config has already checked each setpoint against the limits in effect, which a
    `[[reactor.alarm]]` may have replaced).

    Per loop:
    - `<loop>_deviation`: |pv - setpoint| > 3 x band for 300 s, medium. Three bands is well
      outside normal control noise; five minutes lets setpoint steps and door-open style
      disturbances settle without paging anyone. Deadband 1 x band: it returns only once back
      within 2 x band, so noise at the limit cannot chatter.
    - `<loop>_bad_quality`: the PV reads BAD / OUT_OF_RANGE for 10 s, high. The loop holds
      its output on bad input, so the culture runs uncontrolled; 10 s ignores single glitches,
      off delay 60 s stops an intermittent sensor from chattering.
    - `<loop>_stale`: no fresh PV for 30 s (3x the loops' default stale_after_s), high, off
      delay 60 s: a frozen or lost sensor, with the loop already holding.
    System:
    - `comm_loss`: no successful read for 30 s (link down, or a device answering every read
      with an exception; drivers retry with backoff first), high and latched: a night-time
      outage in an unattended run must still be seen in the morning. While it stands, the
      channels' stale and bad-quality alarms hold instead of adding one alarm per channel.
    - `comm_errors`: more than 5 % of ticks over 10 min failed their read or needed a resend,
      a late reply or an attempt timeout, medium, off delay 10 min: a link that keeps failing
      (corrupted frames, exception replies) or is slow, but never long enough for comm_loss;
      each failed tick is a tick the loops hold.
    Absolute limits, where a loop controls that PV:
    - `temperature_high`: > 39.0 C for 30 s, critical, latched, deadband 0.2 C. Above 39 C
      stem cells are heat-stressed within hours; latched so a transient overheat is never lost.
    - `ph_low` < 6.9 / `ph_high` > 7.6 for 60 s, high, deadband 0.05: outside 6.9-7.6 culture
      medium harms viability; 60 s rides out optical-pH noise and base-bolus mixing.
    Process, on every chamber (a device without the channel never raises them):
    - `cell_count_bad_quality`: the online total cell count bad for 60 s, high. Besides BAD,
      OUT_OF_RANGE and FROZEN this is the quality judge's INCONSISTENT: the count has parted
      from the at-line viable count it is checked against (controller/control/quality.py), which is
      how a drifted or fouled probe and a contamination (a competitor the probe counts and the
      viable assay does not) show. Nothing controls on the count, so only a person can act:
      recheck the probe, sample for sterility.
    - `volume_rate`: the chamber volume moving more than 0.5 mL/h (slope over 1 h) for 90 min,
      medium, deadband 0.2 mL/h. Perfusion keeps feed = harvest, so the volume should stand
      still; a clogged or leaking feed or harvest line moves it at the pump's rate (>= 1 mL/h
      in the default schedule): ~2 h to raise at 1 mL/h. A scheduled 2 mL bolus tilts the 1 h
      slope above the limit for about an hour, hence the 90 min on-delay; boluses up to ~15 mL
      (at 30 mL/h) stay quiet, a larger one is a real volume change and raises it.
    - `heater_cutout`: the device's own over-temperature cut-out has tripped (input
      `heater_cutout` = 1), critical, no on-delay. The last protection layer acted: the
      controller's trips did not hold the temperature (a welded relay, a stuck heater with
      the relay trip disabled) or its sensor disagrees with the device's. The cut-out latches
      in the device: an operator re-arms it with `reset_interlock` `heater_cutout` once the
      chamber is below 38 C (controller/runtime/command_desk.py).
    - `o2_flow_bad_quality`, `co2_flow_bad_quality`: a gas's mass-flow readback bad for 60 s,
      medium. The supply-lost interlock then falls back to the gas's loop, which sees a lost
      supply only once the loop has wound up (minutes to hours later): someone should know.
    """
    out: list[AlarmConfig] = []
    pvs: dict[str, float] = {}
    for name, loop in loops.items():
        if isinstance(loop, tuple | list):
            pv, setpoint, band = loop
        else:
            pv, setpoint, band = loop.pv, loop.setpoint, loop.band
        if not band > 0:
            raise ValueError(f"loop {name!r}: band {band} must be > 0")
        pvs[pv] = setpoint
        out.append(AlarmConfig(
            name=f"{name}_deviation", channel=pv, kind="deviation", limit=round(3 * band, 12),
            deadband=band, on_delay_s=300, priority="medium",
            description=f"{pv} more than 3x band ({3 * band:g}) from setpoint for 5 min"))
        out.append(AlarmConfig(
            name=f"{name}_bad_quality", channel=pv, kind="bad_quality", on_delay_s=10,
            off_delay_s=60, priority="high", description=f"{pv} reading bad or out of range"))
        out.append(AlarmConfig(
            name=f"{name}_stale", channel=pv, kind="stale", limit=30, off_delay_s=60,
            priority="high", description=f"no fresh {pv} reading for 30 s"))
    out.append(AlarmConfig(
        name="comm_loss", kind="comm_loss", on_delay_s=30, off_delay_s=0, priority="high",
        latched=True, description="no communication with the chamber for 30 s"))
    out.append(AlarmConfig(
        name="comm_errors", kind="comm_errors", limit=COMM_ERRORS_LIMIT, rate_window_s=600,
        off_delay_s=600, priority="medium",
        description="more than 5 % of reads failing over 10 min: a degraded link"))
    if "temperature_c" in pvs:
        if check_setpoints:
            _check_inside("temperature_c", pvs["temperature_c"], None, TEMPERATURE_HIGH_C)
        out.append(AlarmConfig(
            name="temperature_high", channel="temperature_c", kind="high",
            limit=TEMPERATURE_HIGH_C, deadband=0.2, on_delay_s=30, priority="critical",
            latched=True, description="chamber above 39.0 C: heat stress"))
    if "ph" in pvs:
        if check_setpoints:
            _check_inside("ph", pvs["ph"], PH_LOW, PH_HIGH)
        out.append(AlarmConfig(
            name="ph_low", channel="ph", kind="low", limit=PH_LOW, deadband=0.05,
            on_delay_s=60, priority="high", description="pH below 6.9: acidic medium"))
        out.append(AlarmConfig(
            name="ph_high", channel="ph", kind="high", limit=PH_HIGH, deadband=0.05,
            on_delay_s=60, priority="high", description="pH above 7.6: alkaline medium"))
    out += _process_alarms()
    return out


def _process_alarms() -> list[AlarmConfig]:
    """The chamber's own alarms, whatever loops run (see `default_alarms`)."""
    return [
        AlarmConfig(
            name="cell_count_bad_quality", channel="total_cells_per_ml", kind="bad_quality",
            on_delay_s=60, off_delay_s=60, priority="high",
            description="online cell count bad, frozen, or disagreeing with the at-line "
                        "viable count: a drifted or fouled probe, or a contamination"),
        AlarmConfig(
            name="volume_rate", channel="volume_ml", kind="rate",
            limit=VOLUME_RATE_LIMIT_ML_PER_H, deadband=0.2,
            rate_window_s=VOLUME_RATE_WINDOW_S, on_delay_s=VOLUME_RATE_ON_DELAY_S,
            priority="medium",
            description=f"volume moving more than {VOLUME_RATE_LIMIT_ML_PER_H:g} mL/h for "
                        f"{VOLUME_RATE_ON_DELAY_S / 60:g} min with feed and harvest balanced: "
                        "a clogged or leaking line"),
        AlarmConfig(
            name="heater_cutout", channel="heater_cutout", kind="high", limit=0.5,
            priority="critical",
            description="the device's own over-temperature cut-out tripped and holds the "
                        "heater relay open: the controller's protection did not hold; re-arm "
                        "with reset_interlock heater_cutout once below 38 C"),
        *(AlarmConfig(
            name=f"{gas}_flow_bad_quality", channel=f"{gas}_flow_pct", kind="bad_quality",
            on_delay_s=60, off_delay_s=60, priority="medium",
            description=f"{gas.upper()} mass-flow readback bad: a lost {gas.upper()} supply "
                        "is then seen only from its loop, later")
          for gas in ("o2", "co2")),
    ]


def _check_inside(pv: str, setpoint: float, low: float | None, high: float | None) -> None:
    if (low is not None and setpoint <= low) or (high is not None and setpoint >= high):
        raise ValueError(f"{pv} setpoint {setpoint} outside the default alarm limits "
                         f"({low}, {high}): the alarm would stand all run")

