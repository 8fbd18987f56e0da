"""The fault catalogue: every fault the emulated chamber can inject, as data.

Each row says what the fault does, which parameters it takes (unit, default, allowed values),
what the controller sees of it and how fast, what it does about it, and which scenario test
asserts that. docs/faults.md is generated from it (`catalogue_markdown`). Parsing a fault to
inject is `sim_hardware.faults.specs`; injecting it into a running chamber is
`sim_hardware.faults.injection`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.contract.datasheet import INPUTS
from drivers.contract.datasheet import PUMPS as PUMP_OUTPUTS

DEVICE_STATE_CHANNELS = ("heater_cutout", "device_boot_id", "device_uptime_s")
"""Inputs that report the device's own state, not a measurement: no sensor fault hits them."""
SENSOR_CHANNELS = tuple(c.name for c in INPUTS if c.name not in DEVICE_STATE_CHANNELS)
PUMPS = tuple(name.removesuffix("_ml_per_h") for name in PUMP_OUTPUTS)
"""The pumps a fault may hit, by the short name a spec uses (`pump=feed`)."""

# Per-channel defaults for the sensor faults whose size depends on the channel's unit.
_DRIFT_PER_H = {"temperature_c": 0.05, "do_pct_air": 0.5, "ph": 0.005,
                "total_cells_per_ml": 2.0e4, "volume_ml": 0.1, "viable_cells_per_ml": 2.0e4,
                "glucose_mm": 0.05, "lactate_mm": 0.05, "feed_delivered_ml": 0.1,
                "harvest_delivered_ml": 0.1, "base_delivered_ml": 0.1, "o2_flow_pct": 0.5,
                "co2_flow_pct": 0.1, "o2_supply_kpa": 5.0, "co2_supply_kpa": 5.0,
                "cd34_pct": 0.5, "cd34_cd90_pct": 0.2, "viability_pct": 0.5, "bga_ph": 0.005,
                "bga_po2_mmhg": 1.0, "bga_pco2_mmhg": 0.5, "sampled_ml": 0.1}
_SPIKE = {"temperature_c": 5.0, "do_pct_air": 30.0, "ph": 0.5, "total_cells_per_ml": 1.0e6,
          "volume_ml": 10.0, "viable_cells_per_ml": 1.0e6, "glucose_mm": 5.0,
          "lactate_mm": 5.0, "feed_delivered_ml": 5.0, "harvest_delivered_ml": 5.0,
          "base_delivered_ml": 5.0, "o2_flow_pct": 10.0, "co2_flow_pct": 2.0,
          "o2_supply_kpa": 100.0, "co2_supply_kpa": 100.0, "cd34_pct": 20.0,
          "cd34_cd90_pct": 10.0, "viability_pct": 20.0, "bga_ph": 0.5, "bga_po2_mmhg": 50.0,
          "bga_pco2_mmhg": 20.0, "sampled_ml": 5.0}
_NOISE = {"temperature_c": 0.2, "do_pct_air": 3.0, "ph": 0.05, "total_cells_per_ml": 5.0e4,
          "volume_ml": 1.0, "viable_cells_per_ml": 5.0e4, "glucose_mm": 0.5, "lactate_mm": 0.5,
          "feed_delivered_ml": 0.5, "harvest_delivered_ml": 0.5, "base_delivered_ml": 0.5,
          "o2_flow_pct": 1.0, "co2_flow_pct": 0.5, "o2_supply_kpa": 10.0,
          "co2_supply_kpa": 10.0, "cd34_pct": 5.0, "cd34_cd90_pct": 2.0, "viability_pct": 5.0,
          "bga_ph": 0.05, "bga_po2_mmhg": 10.0, "bga_pco2_mmhg": 3.0, "sampled_ml": 0.5}


@dataclass(frozen=True)
class FaultParam:
    """One parameter of a fault type. `default` None: required. `by_channel`: the default
    depends on the faulted channel (its unit)."""

    name: str
    unit: str
    description: str
    default: float | str | None = None
    by_channel: Mapping[str, float] | None = None
    choices: tuple[str, ...] | None = None
    gt: float | None = None
    """The allowed range of a number: > gt, >= ge, <= le (each when set)."""
    ge: float | None = None
    le: float | None = None

    def describe_default(self) -> str:
        if self.by_channel is not None:
            return "per channel: " + ", ".join(f"{k} {v:g}" for k, v in self.by_channel.items())
        if self.default is None:
            return "required"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


@dataclass(frozen=True)
class FaultType:
    """A row of the catalogue."""

    name: str
    kind: str
    """sensor, actuator, process or comm."""
    target: str
    """Which channel/actuator it hits ("channel=" / "pump=": chosen by a parameter)."""
    effect: str
    params: tuple[FaultParam, ...] = ()
    detection: str = ""
    """What the controller sees (verdict, alarm, interlock, counted error) and how fast: the
    time its scenario test asserts and the time measured there, for the default config."""
    reaction: str = ""
    """What the controller does about it, and what is left to people."""
    scenario: str = ""
    """The test in tests/system/test_safety_scenarios.py that injects the fault into the whole
    controller and asserts the detection and the reaction (`name` or `name[id]`)."""
    allows_duration: bool = True


_CH = FaultParam("channel", "", "the sensor channel", choices=SENSOR_CHANNELS)
_PUMP = FaultParam("pump", "", "which pump", choices=PUMPS)
_GAS = FaultParam("gas", "", "which gas's mass-flow readback", choices=("o2", "co2"))

_SCENARIOS = "test_each_fault_raises_its_alarm_in_time"

CATALOGUE: tuple[FaultType, ...] = (
    FaultType("sensor_stuck", "sensor", "channel=",
              "the reading freezes at its value when the fault starts (the first read at or "
              "after `at`), quality GOOD, fresh timestamps, while the truth moves",
              (_CH,),
              "verdict FROZEN after 15 min without change (temperature, DO, pH; 1 h for the "
              "cell count; volume unchecked), alarm `<loop>_bad_quality` 10 s later. pH stuck: "
              "alarm asserted within 15 min 20 s, measured 15 min 15 s",
              "the loop holds its output (integral frozen) while FROZEN: the pH loop held for "
              "the rest of the run (asserted >= 9.5 of the 10 h after the fault), the "
              "temperature loop never (asserted)",
              f"{_SCENARIOS}[sensor_stuck], test_a_stuck_ph_probe_holds_the_ph_loop"),
    FaultType("sensor_drift", "sensor", "channel=",
              "adds rate_per_h x hours since `at` to the reading",
              (_CH, FaultParam("rate_per_h", "channel unit/h", "drift rate (signed)",
                               by_channel=_DRIFT_PER_H)),
              "cell count only: verdict INCONSISTENT when an at-line viable count arrives and "
              "the probe's one-minute mean at its draw time is outside 0.67-1.5x of it, alarm "
              "`cell_count_bad_quality` 60 s later. Default rate from 2 h: caught at the 6 h "
              "sample (published 6.5 h), asserted within 4 h 30 min, measured 4 h 30 min "
              "(alarm 4 h 31 min). DO and pH: standardised against the blood-gas reference "
              "(docs/alarms.md), alarm `<channel>_probe_failing` when the offset moves faster "
              "than its limit; DO at the default rate from 1 d: asserted within 26 h, measured "
              "12.5 h with 6-hourly references (test_probe_standardisation.py), nothing else "
              "raised. Temperature and volume drift is **not detected**: no reference measures "
              "them, and the loop follows the drifting reading",
              "cell count: alarm only (nothing controls on the cell count): recheck the probe "
              "against a fresh count; the verdict stands until an at-line count agrees again. "
              "DO and pH: the readings corrected by the estimated offset from each reference "
              "on (the true DO kept within 20-26 % air, asserted > 18), so the loop holds the "
              "culture, not the probe, at setpoint",
              "test_a_drifting_cell_count_probe_disagrees_with_the_at_line_count"),
    FaultType("sensor_spike", "sensor", "channel=",
              "isolated spikes: the first read at or after each `at + k*period_s` is off by "
              "+/- magnitude (seeded sign); the reads between are normal",
              (_CH, FaultParam("magnitude", "channel unit", "spike size",
                               by_channel=_SPIKE, gt=0.0),
               FaultParam("period_s", "s", "time between spikes", default=600.0,
                          gt=0.0)),
              "verdict IMPLAUSIBLE on the spike's own sample (0 s) when the step beats the "
              "channel's plausible rate (temperature 0.5 C/s, DO 10 %/s, pH 0.05/s; the cell "
              "count and volume have none: not detected). pH, 0.5: asserted and measured, "
              "every spike (12 in 2 h) rejected and no other sample",
              "the sample is rejected: the loop holds its output on it (and for the next 2 "
              "good samples, resume_after_good); the spike is never the reference for the "
              "next sample; no alarm (a single glitch pages nobody)",
              "test_a_ph_spike_is_rejected_on_its_own_sample_and_never_acted_on"),
    FaultType("sensor_dropout", "sensor", "channel=",
              "reading quality BAD, value NaN",
              (_CH,),
              "quality BAD on the next read (from the device), alarm `<loop>_bad_quality` "
              "after 10 s: temperature, asserted within 20 s, measured 10 s",
              "the loop holds its output while BAD (measured: the temperature loop held for "
              "all 10 h after the fault), acting again on the 3rd good sample after",
              f"{_SCENARIOS}[sensor_dropout]"),
    FaultType("sensor_noise", "sensor", "channel=",
              "adds extra white noise N(0, std) per read (seeded)",
              (_CH, FaultParam("std", "channel unit", "standard deviation", by_channel=_NOISE,
                               gt=0.0)),
              "verdict NOISY while the last 60 s window's sample-to-sample spread exceeds ~4x "
              "the probe's noise (temperature 0.06 C, DO 1 % air, pH 0.015, volume 0.2 mL; "
              "cell count unchecked), alarm `<loop>_bad_quality` 10 s later. pH, 0.05: NOISY "
              "asserted within 2 min, measured 61 s; the alarm measured at 60 s (steps beyond "
              "the plausible rate are IMPLAUSIBLE first)",
              "the loop holds its output while the channel is NOISY (pH: the last good CO2 %) "
              "rather than chase the noise; no harder filtering or lower gain. Trusted again "
              "within two windows of the noise stopping, and the loop acts again",
              "test_a_noisy_ph_probe_is_marked_noisy_and_the_loop_holds"),
    FaultType("heater_failed_off", "actuator", "heater_pct",
              "the heater delivers 0 % whatever is commanded; the temperature falls towards "
              "ambient with the chamber's thermal time constant",
              (),
              "alarm `temperature_deviation` (3x band, 0.3 C, for 5 min): asserted within "
              "15 min, measured 5 min 30 s",
              "alarm only: the loop drives the heater to ~100 %, which it does not deliver; "
              "feeding less cold medium and the repair are crew/ground actions",
              f"{_SCENARIOS}[heater_failed_off]"),
    FaultType("heater_stuck_on", "actuator", "heater_pct",
              "the heater delivers 100 % whatever is commanded (the setpoint register still "
              "shows the command)",
              (),
              "interlocks `overtemp_limit` (38.0 C) then `overtemp_cut` (38.5 C), asserted "
              "within 10 min of the fault, measured 1 min 23 s and 2 min 2 s (day 2 of a 3-day "
              "run: 1 min 24 s, 2 min 3 s); alarm `temperature_deviation` as the chamber "
              "cools (9 min 5 s)",
              "`overtemp_limit` caps the drive at 20 %, which the stuck heater ignores; "
              "`overtemp_cut` opens the heater relay (the independent path) and zeroes the "
              "drive: the measured temperature peaks at 38.55 C (asserted < 39.0; 3-day run "
              "with the fault at day 2: 38.54 C), `overtemp_safe` and `temperature_high` never "
              "come. Both trips latch to the end of the run (asserted): the relay stays open "
              "until an operator's `reset_interlock`, refused while above 37.8 C",
              "test_a_stuck_heater_trips_the_over_temperature_tiers_in_order"),
    FaultType("heater_relay_welded", "actuator", "heater_relay",
              "the heater power relay's contacts are welded shut: closed whatever opens it, "
              "the controller's trip and the device's own cut-out alike",
              (),
              "with `heater_stuck_on` at 2 h: interlocks `overtemp_limit`, `overtemp_cut`, "
              "`overtemp_safe` at 1 min 23 s, 2 min 2 s, 3 min 29 s, alarm "
              "`temperature_high` (critical) at 3 min 15 s, the device's cut-out trips at "
              "40 C and raises the critical `heater_cutout` alarm at 4 min 25 s (asserted "
              "within 10 min). Alone (heater working): not detected, the loop keeps control",
              "the controller opens the relay and goes to its safe state, which the weld "
              "ignores, and so does the cut-out: the chamber reaches 47.4 C (asserted > 45). "
              "Only the critical alarms are left: cutting the heater's mains is a crew "
              "action; once cool, `reset_interlock heater_cutout` re-arms the cut-out",
              "test_protection_scenarios.py::test_a_welded_relay_leaves_a_stuck_heater_uncut"),
    FaultType("cutout_failed", "actuator", "heater_cutout",
              "the device's own over-temperature cut-out never trips (its input stays 0): "
              "only the controller's layers are left",
              (),
              "not detected by itself (`heater_cutout` reads 0, armed, as a healthy one does): "
              "a failed cut-out shows only in a proof test. With `heater_stuck_on` at 2 h the "
              "trips come as with a working one (1 min 23 s, 2 min 2 s)",
              "none needed while the controller's relay trip works: with a stuck heater it "
              "alone holds the chamber at a 38.55 C peak (asserted < 39.0, the cut-out never "
              "trips, no `temperature_high`)",
              "test_protection_scenarios.py::test_the_relay_trip_alone_holds_a_stuck_heater"),
    FaultType("mass_flow_readback_failed", "sensor", "gas=",
              "the gas's mass-flow readback (`<gas>_flow_pct`) reads BAD, value NaN",
              (_GAS,),
              "alarm `<gas>_flow_bad_quality` (medium) after 60 s, asserted and measured "
              "(co2 at day 3)",
              "the supply-lost interlock no longer trusts that gas's readbacks and falls back "
              "to its loop. With the supply also lost at day 3: the supply pressure still "
              "catches it in 60 s; with the pressure dropped out too, only the pH loop does, "
              "at 16 min 25 s (asserted)",
              "test_protection_scenarios.py::"
              "test_a_lost_supply_without_readbacks_is_found_by_its_loop"),
    FaultType("pump_clogged", "actuator", "pump=",
              "the pump delivers 0 mL/h whatever is commanded",
              (_PUMP,),
              "feed or harvest, during perfusion (feed = harvest): alarm `volume_rate`, the "
              "volume's 1 h slope beyond 0.5 mL/h for 90 min. Feed clogged as perfusion "
              "starts (2 d, 1 mL/h): asserted within 2 h 15 min, measured 2 h 3 min. First, "
              "from the pump's totaliser: alarm `feed_delivery_mismatch` when its 1 h window "
              "closes (asserted within 1 h, measured 1 h); a bolus on the pump is judged "
              "short the tick after its volume is commanded (day-4 bolus, 10 min clog: "
              "measured 4 min 1 s, `test_delivery_scenarios.py`). Before perfusion nothing "
              "flows, so nothing shows; base: not detected by the volume (the default "
              "config runs no base loop), by its totaliser as for feed",
              "alarm only: the opposing pump keeps running (the volume falls at the harvest's "
              "rate until the `volume_low` interlock stops the harvest at 20 mL); switching "
              "to a spare line is a crew action",
              "test_a_clogged_feed_pump_shows_as_the_volume_falling"),
    FaultType("pump_runaway", "actuator", "pump=",
              "the pump runs at its maximum whatever is commanded",
              (_PUMP,),
              "feed or base: interlock `volume_high` at 150 mL; feed at 60 mL/h from 1 h: "
              "asserted within 1 h 45 min, measured 1 h 40 min (alarm `volume_rate` at 1 h "
              "33 min). Harvest: interlock `volume_low` at 20 mL (not in the scenario)",
              "the interlock stops the feed and base commands (asserted: feed 0 after the "
              "trip); a runaway pump ignores its command, so the volume keeps rising: cutting "
              "its power is a crew action",
              "test_a_runaway_feed_pump_trips_volume_high"),
    FaultType("totaliser_failed", "actuator", "pump=",
              "the pump's totaliser stops counting: it reads its value at `at` (GOOD) while "
              "the pump delivers as commanded; when the fault ends it reads the true count "
              "again",
              (_PUMP,),
              "alarm `feed_delivery_mismatch` (high) when the pump's measured mL over the "
              "1 h window falls short of the commanded by max(0.2 mL, 10 %); a bolus on it "
              "is judged short the tick after its volume is commanded. Feed at 1 mL/h: "
              "asserted within 2 h, measured 1 h (the window closing at 49 h); and "
              "`volume_balance` (the volume shows the feed the totaliser misses), measured 1 h "
              "1 min: both together tell a lying totaliser from a clogged pump, whose balance "
              "closes",
              "alarm only, and the record says what the totaliser says: under the default "
              "`on_short = stop` nothing more is commanded (asserted: the feed keeps its "
              "perfusion rate); an operator checks the line against the volume",
              "test_delivery_scenarios.py::test_a_failed_totaliser_is_alarmed_without_the_"
              "volume_probe"),
    FaultType("pump_underdelivery", "actuator", "pump=",
              "the pump delivers `fraction` of what is commanded (worn tubing)",
              (_PUMP, FaultParam("fraction", "-", "share of the command delivered",
                                 default=0.5, ge=0.0, le=1.0)),
              "alarm `feed_delivery_mismatch` (high): the bolus under way is judged short "
              "the tick after its volume is commanded, the perfusion over its 1 h window. "
              "A 2 mL feed bolus at 4 d (4 min at 30 mL/h): asserted within 5 min of the "
              "bolus, measured 4 min 1 s (half delivered: 0.97 of 2 mL booked)",
              "the ledger books the measured volume; `on_short = complete` pumps on until "
              "the measured volume is in (up to `max_commanded_factor` x), `stop` leaves the "
              "bolus open (short) and alarmed",
              "test_delivery_scenarios.py::test_an_underdelivering_pump_is_completed_to_the_"
              "measured_volume"),
    FaultType("device_reboot", "comm", "device",
              "the device restarts at `at`: a new boot id, uptime and totalisers from 0, every "
              "output at its safe value until written again (the culture goes on). It does "
              "not last (no duration)",
              (),
              "event and alarm `device_rebooted` (medium) on the first reading after it (the "
              "boot id changed): asserted within 2 s, measured 0 s (the same tick)",
              "totalisers re-baselined (nothing booked twice or negative), every output "
              "written afresh on the same tick (asserted: the heater and pumps back to their "
              "commands)",
              "test_delivery_scenarios.py::test_a_device_reboot_is_alarmed_and_every_output_"
              "written_afresh",
              allows_duration=False),
    FaultType("o2_supply_lost", "actuator", "o2_pct",
              "o2_pct actually delivered is 0 whatever is commanded (the mixer delivers N2 "
              "instead); DO falls towards 0 at the cells' uptake and kLa",
              (),
              "interlock and high alarm `o2_supply_lost` from the device's readbacks (supply "
              "pressure 0 < 100 kPa, or the O2 mass flow > 1 % below the output written, for "
              "60 s): asserted and measured 60 s, on day 3 with the DO probe dropped out "
              "too. Without GOOD readbacks, from the loop (O2 output at its maximum for 10 "
              "min, DO > 5 % air low and not recovering): asserted within 2 h 15 min, "
              "measured 1 h 45 min, the PI winding up; alarm `do_deviation` before it (within "
              "12 min asserted, 9 min 30 s measured)",
              "first the DO loop drives o2_pct up towards its 60 % limit, which delivers "
              "nothing; once tripped, o2_pct held at 21 % (air) and perfusion at 7 mL/h "
              "(fresh medium is the only O2 left: 57 % of a clean run's viable cells at day 7 "
              "against 34 % without the interlock); it resets when DO is back within 2.5 % "
              "air of setpoint (readbacks not GOOD) or as soon as the readbacks show the gas "
              "back (asserted within 1 s). Restoring the supply is a crew action",
              "test_a_lost_o2_supply_raises_do_deviation_then_trips_its_interlock, "
              "test_protection_scenarios.py::"
              "test_o2_lost_with_the_do_probe_bad_is_seen_from_the_readbacks"),
    FaultType("co2_supply_lost", "actuator", "co2_pct",
              "co2_pct actually delivered is `residual_pct` (the carrier gas's own CO2) "
              "whatever is commanded: dissolved CO2 strips out and the bicarbonate medium goes "
              "alkaline (pH > 7.6 within hours)",
              (FaultParam("residual_pct", "% gas", "CO2 left in the gas without the supply: 0 "
                          "for a bottled N2 carrier, ~0.5 for ISS cabin air", default=0.0,
                          ge=0.0, le=20.0),),
              "interlock and high alarm `co2_supply_lost` from the device's readbacks (supply "
              "pressure 0 < 100 kPa, or the CO2 mass flow > 1 % below the output written, for "
              "60 s): asserted and measured 60 s on day 3, also with the pH probe stuck (the "
              "issue's double fault: asserted within 30 min). Without GOOD readbacks, from "
              "the loop (CO2 output at its maximum for 10 min, pH > 0.15 high and not "
              "recovering): 16 min 25 s. Alarm `ph_high` (> 7.6 for 60 s): asserted within "
              "4 h (30 min on day 3), measured 13 min 20 s (the interlock at 60 s)",
              "the pH loop drives co2_pct to its 15 % limit, which delivers nothing; once "
              "tripped, base, feed and harvest stopped (boluses suspended, no cell washed "
              "out) and CO2 left at the maximum so a returning supply pulls the pH straight "
              "back. No actuator can hold a bicarbonate medium below pH ~8.2 without CO2: "
              "2.5 % of a clean run's viable cells at day 7 (1.9 % with no reaction). A "
              "HEPES-buffered feed or the supply back are crew actions",
              f"{_SCENARIOS}[co2_supply_lost], "
              "test_co2_failure.py::test_ph_alarm_and_interlock_within_30_minutes_of_the_fault, "
              "test_protection_scenarios.py::"
              "test_co2_lost_with_the_ph_probe_stuck_is_seen_from_the_readbacks"),
    FaultType("contamination", "process", "chamber",
              "a fast-growing competitor (doubling ~1 h [est]) inoculated at `at`: it consumes "
              "glucose (to lactate) and O2, and adds to the optical total cell count but not "
              "to the viable HSC count; booked in the ledger as contaminant_cells. It does "
              "not end (no duration)",
              (FaultParam("cells_per_ml", "cells/mL", "inoculum", default=100.0, gt=0.0),
               FaultParam("doubling_h", "h", "doubling time", default=1.0, gt=0.0),
               FaultParam("q_glc_pmol_per_cell_h", "pmol/cell/h", "glucose uptake",
                          default=0.005, ge=0.0),
               FaultParam("q_o2_pmol_per_cell_h", "pmol/cell/h", "O2 uptake", default=0.01,
                          ge=0.0),
               FaultParam("max_cells_per_ml", "cells/mL", "carrying capacity",
                          default=1.0e9, gt=0.0)),
              "verdict INCONSISTENT on the cell count when an at-line viable count arrives "
              "and the probe (which counts the competitor) read more than 1.5x it at the draw "
              "time, alarm `cell_count_bad_quality` 60 s later. 100 /mL at 2 h: caught at the "
              "12 h sample (published 12.5 h), asserted within 10 h 30 min, measured 10 h "
              "30 min (alarm 10 h 31 min); the at-line cadence (6 h + 30 min assay) bounds "
              "the delay",
              "alarm only: a contamination cannot be controlled away; stopping the run or "
              "isolating the chamber is a crew decision. The loops are untouched",
              "test_a_contamination_shows_as_the_cell_count_parting_from_the_viable_count",
              allows_duration=False),
    FaultType("comm_timeout", "comm", "link",
              "read/write/heartbeat raise drivers.CommTimeoutError while active",
              (),
              "every failed call counted, that tick's readings COMM_ERROR; alarm `comm_loss` "
              "(30 s on-delay): asserted within 40 s, measured 30 s. The channels' stale and "
              "bad-quality alarms hold on COMM_ERROR readings: one alarm for the link, not "
              "one per channel",
              "the loops hold; after the outage every output is written afresh; on the "
              "served device its watchdog takes the safe state after its comm timeout",
              f"{_SCENARIOS}[comm_timeout]"),
    FaultType("comm_corrupt", "comm", "link",
              "each read/write/heartbeat raises drivers.FrameError with `probability` "
              "(seeded)",
              (FaultParam("probability", "", "chance per call", default=0.1, gt=0.0,
                          le=1.0),),
              "each corrupted call counted (read/write errors, a `comm` event) and its tick's "
              "readings COMM_ERROR: the first within 30 s asserted, 8 s measured, at 0.1. "
              "Alarm `comm_errors` (over 5 % of the last 10 min of reads failed): asserted "
              "within 7 min, measured 4 min 40 s at 0.1, and no other alarm: `comm_loss` "
              "needs 30 s without a good read",
              "the loops hold on exactly the failed ticks (asserted: held ticks = failed "
              "reads) and act again from the 3rd good read after; the call is retried on the "
              "next tick and every output rewritten",
              "test_corrupt_frames_are_counted_and_only_their_ticks_are_held"),
    FaultType("comm_exception", "comm", "link",
              "read/write/heartbeat raise drivers.DeviceError('device busy') while active",
              (),
              "every read fails and is counted (600 of 600 in 10 min), its readings "
              "COMM_ERROR; alarm `comm_loss` (no successful read for 30 s, though the device "
              "answers) asserted within 40 s, measured 30 s, with `comm_errors`; the "
              "channels' alarms hold",
              "the loops hold for the whole fault (so nothing is written) and act again after "
              "it; reads are retried every tick, without backoff",
              "test_a_busy_device_is_counted_alarmed_and_the_loops_hold"),
    FaultType("chamber_leak", "process", "chamber",
              "culture (medium and cells alike, past the harvest's cell retention) leaves the "
              "chamber at `rate_ml_per_h` through no pump: no totaliser counts it; the model "
              "books it as harvested volume, not as harvested cells",
              (FaultParam("rate_ml_per_h", "mL/h", "leak rate", default=1.0, gt=0.0,
                          le=60.0),),
              "the mass balance (`volume_balance`, high: the measured volume change against the "
              "totalised feed + base - harvest over 2 h, beyond 1 mL): 1 mL/h from 3 h, "
              "asserted within 50-70 min, measured 58 min; `volume_rate` (medium) follows at "
              "2 h 3 min. Detects leaks from 0.5 mL/h (tolerance / window), in about "
              "1 mL / rate; a slower one is **not detected**",
              "alarm only: the loops and the schedule go on (the volume interlocks stop the "
              "harvest at 20 mL); finding and closing the leak, and containing a spill of "
              "culture, are crew actions",
              "test_balance_scenarios.py::test_a_leak_opens_a_gap_in_the_mass_balance"),
    FaultType("sensor_offset", "sensor", "channel=",
              "adds `offset` to every reading from `at` on: a calibration step, e.g. a probe "
              "re-seated or a load cell re-tared wrongly",
              (_CH, FaultParam("offset", "channel unit", "the step (signed)")),
              "volume: the mass balance sees the step as a gap at once: +2 mL at 3 h, "
              "`volume_balance` asserted within 70 s, measured 0 s (the first sample after "
              "it), cleared when the step leaves the 2 h window (asserted and measured 2 h "
              "later), and nothing else raised. DO and pH: standardised at the next blood-gas "
              "references, `<channel>_probe_failing` for a step beyond the step test "
              "(untested). Temperature: **not detected** (no reference measures it; the loop "
              "follows the offset reading); the cell count as for sensor_drift (untested)",
              "alarm only: recalibrate the probe; no loop controls the volume, so nothing acts "
              "on the step",
              "test_balance_scenarios.py::"
              "test_a_volume_offset_shows_in_the_balance_for_one_window"),
    FaultType("heater_degraded", "actuator", "heater_pct",
              "the heater delivers `fraction` of the commanded power (an ageing element or a "
              "failing triac)",
              (FaultParam("fraction", "", "share of the commanded heat delivered", default=0.5,
                          ge=0.0, le=1.0),),
              "0.8: **not detected** (asserted: no alarm, no trip): the loop compensates. "
              "0.5: the chamber needs ~53 % of full heat, 106 % of the degraded heater's, so "
              "the loop saturates and the temperature settles at ~36.2 C: alarm "
              "`temperature_deviation` asserted within 10 min, measured 5 min 50 s, and it "
              "stands. 0.7 (measured, not asserted): the same alarm 6 min 35 s after, "
              "returned 11 min later",
              "the temperature loop raises the heater output by 1/fraction (asserted at 0.8: "
              "within 5 %, the temperature within 0.02 C of setpoint); at 0.5 it holds "
              "~100 %. Replacing the element is a crew action; a trend of the heater output "
              "at setpoint would show the ageing, nothing watches it yet",
              "test_balance_scenarios.py::"
              "test_a_degraded_heater_is_compensated_and_raises_nothing"),
    FaultType("pump_line_disconnected", "actuator", "pump=",
              "the line between the pump and the chamber is off: the pump runs and its "
              "totaliser counts, the chamber receives (feed, base) or gives (harvest) nothing",
              (_PUMP,),
              "only the mass balance (the totaliser counts what never arrived): feed line "
              "off at 3 h 30 min with 1 mL/h perfusion and a 2 mL bolus at 4 h, "
              "`volume_balance` asserted within 3 min of the bolus, measured 4 h 2 min (52 min "
              "after the fault); `volume_rate` at 5 h 33 min. The bolus is booked done, 2 of 2 "
              "mL (asserted): the totaliser cannot tell. Harvest or base lines: untested",
              "alarm only: the perfusion and the schedule go on; reconnecting the line and "
              "correcting the feed record are crew actions",
              "test_balance_scenarios.py::"
              "test_a_disconnected_feed_line_is_seen_only_by_the_balance"),
)

FAULTS: dict[str, FaultType] = {f.name: f for f in CATALOGUE}


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (docs/faults.md is generated from this, and a test
    checks the two agree); scenario tests are in tests/system/test_safety_scenarios.py."""
    rows = ["| fault | kind | target | parameters (default, unit) | effect | detection | "
            "reaction | scenario test |", "|---|---|---|---|---|---|---|---|"]
    for f in CATALOGUE:
        params = "; ".join(f"`{p.name}` ({p.describe_default()}"
                           + (f", {p.unit}" if p.unit else "")
                           + (f"; {'/'.join(p.choices)}" if p.choices else "") + ")"
                           for p in f.params) or "-"
        scenarios = ", ".join(f"`{name.strip()}`" for name in f.scenario.split(","))
        rows.append(f"| `{f.name}` | {f.kind} | {f.target} | {params} | {f.effect} | "
                    f"{f.detection} | {f.reaction} | {scenarios} |")
    return "\n".join(rows)
