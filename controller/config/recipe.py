"""`[reactor.recipe]`: a procedure of phases that runs the culture by its state (docs/recipes.md).

Each `[[reactor.recipe.phase]]` sets loop setpoints and modes on entry, feeds by one strategy,
may give boluses at offsets into the phase, and ends by the first of its `[[...exit]]`
conditions to hold (controller/config/conditions.py), going to the exit's `next` phase (default:
the phase after it; after the last, `complete`). What an alarm or an interlock does to a
running phase, and what the pumps do while the procedure holds, are declared per phase with
safe defaults.

Checked at load, each error naming the phase and the key: every channel a condition or a
strategy reads exists, every phase can be reached from the first, every phase has a way out,
every `next` names a phase, setpoints name loops. The checks against the loops live on
ReactorConfig (they need its loops).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from controller.alarms.estimate_channels import ESTIMATE_CHANNELS, input_channel
from controller.config.conditions import CLOCKS, Condition, comparisons, parse_condition
from drivers.contract.datasheet import CHANNELS, Channel, Direction, channel
from drivers.contract.validation import Number, Seconds, StrictModel

COMPLETE = "complete"
"""The `next` of an exit that ends the procedure."""
REACTIONS = ("nothing", "hold", "abort")
Reaction = Literal["nothing", "hold", "abort"]
PHASE_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,47}$"
FEED_MAX_ML_PER_H = channel("feed_ml_per_h").maximum
HARVEST_MAX_ML_PER_H = channel("harvest_ml_per_h").maximum


class FixedFeed(StrictModel):
    """Today's rates: fixed pump rates for the whole phase (harvest = feed unless given)."""

    strategy: Literal["fixed"] = "fixed"
    feed_ml_per_h: Number = Field(default=0.0, ge=0, le=FEED_MAX_ML_PER_H)
    harvest_ml_per_h: Number | None = Field(default=None, ge=0, le=HARVEST_MAX_ML_PER_H)
    base_ml_per_h: Number = Field(default=0.0, ge=0, le=channel("base_ml_per_h").maximum)


class CellSpecificFeed(StrictModel):
    """Perfusion proportional to the viable cells present: the cell-specific perfusion rate
    (CSPR, nL per cell per day) times cells/mL times the working volume, harvest = feed, within
    [min, max]. A bad or stale count or volume holds the last rate (a loop never acts on a bad
    value)."""

    strategy: Literal["cell_specific"]
    nl_per_cell_per_d: Number = Field(gt=0, le=10.0)
    source: str = "est_viable_cells_per_ml"
    """Where the cells come from: the soft sensor (default) or the at-line count
    (`viable_cells_per_ml`)."""
    min_ml_per_h: Number = Field(default=0.0, ge=0, le=FEED_MAX_ML_PER_H)
    max_ml_per_h: Number = Field(default=20.0, gt=0, le=FEED_MAX_ML_PER_H)

    @model_validator(mode="after")
    def _ordered(self) -> CellSpecificFeed:
        if self.min_ml_per_h > self.max_ml_per_h:
            raise ValueError(f"min_ml_per_h {self.min_ml_per_h} above max_ml_per_h "
                             f"{self.max_ml_per_h}")
        return self


class InhibitorDilutionFeed(StrictModel):
    """A PI loop that holds the estimated inhibitor at or below `setpoint` by perfusion
    (feed = harvest: the volume stays, the inhibitor is washed out), within [min, max] mL/h;
    reverse acting (more perfusion, less inhibitor). After Csaszar et al. 2012 (fed-batch
    dilution) and Caldwell et al. 2015 (PID-controlled dilution of TGF-b1)."""

    strategy: Literal["inhibitor_dilution"]
    source: str = "est_inhibitor_ng_per_ml"
    setpoint: Number = Field(gt=0)
    kp_ml_per_h: Number = Field(default=50.0, gt=0, le=10000.0)
    """mL/h of perfusion per unit (ng/mL) of inhibitor above the setpoint."""
    ti_s: Seconds = Field(default=21600.0, gt=0)
    min_ml_per_h: Number = Field(default=0.0, ge=0, le=FEED_MAX_ML_PER_H)
    max_ml_per_h: Number = Field(default=20.0, gt=0, le=FEED_MAX_ML_PER_H)

    @model_validator(mode="after")
    def _ordered(self) -> InhibitorDilutionFeed:
        if self.min_ml_per_h >= self.max_ml_per_h:
            raise ValueError(f"min_ml_per_h {self.min_ml_per_h} must be below max_ml_per_h "
                             f"{self.max_ml_per_h}")
        return self


FeedStrategy = Annotated[FixedFeed | CellSpecificFeed | InhibitorDilutionFeed,
                         Field(discriminator="strategy")]


class PhaseBolus(StrictModel):
    """A volume given once, `after` this long into the phase (holds excluded)."""

    after: Seconds = Field(ge=0)
    volume_ml: Number = Field(gt=0, le=100)
    channel: Literal["feed_ml_per_h", "base_ml_per_h"] = "feed_ml_per_h"
    rate_ml_per_h: Number | None = Field(default=None, gt=0)
    """The pump's rate while the bolus runs (default: the pump's maximum, as the schedule's)."""

    @model_validator(mode="after")
    def _rate_within_pump(self) -> PhaseBolus:
        """Against the bolus's own pump: the base pump tops out at 10 mL/h, not the feed's 60."""
        maximum = channel(self.channel).maximum
        if self.rate_ml_per_h is not None and self.rate_ml_per_h > maximum:
            raise ValueError(f"rate_ml_per_h {self.rate_ml_per_h} above {self.channel}'s "
                             f"maximum {maximum}")
        return self


class PhaseExit(StrictModel):
    """The phase ends when `when` holds, and `next` runs (a phase name or `complete`).
    `when` is checked by RecipeConfig, so its errors can name the phase."""

    when: str
    next: str | None = None

    @property
    def condition(self) -> Condition:
        return parse_condition(self.when)


class HoldOutputs(StrictModel):
    """The pumps while the procedure holds, is stopped or complete after this phase. The loops
    go on regulating temperature, DO and pH: the cells need them whatever the procedure does."""

    feed_ml_per_h: Number = Field(default=0.0, ge=0, le=FEED_MAX_ML_PER_H)
    harvest_ml_per_h: Number = Field(default=0.0, ge=0, le=HARVEST_MAX_ML_PER_H)
    base_ml_per_h: Number = Field(default=0.0, ge=0, le=channel("base_ml_per_h").maximum)


class PhaseLoop(StrictModel):
    """A loop's setpoint and mode from the phase's start (what is not given stays)."""

    setpoint: Number | None = None
    mode: Literal["auto", "manual"] | None = None
    output: Number | None = None
    """The output held in manual mode (required with mode = "manual"); checked by RecipeConfig,
    so its error can name the phase."""
    ramp_per_h: Number | None = Field(default=None, gt=0)
    """Move the setpoint there at this rate (setpoint units per hour) instead of at once, so
    the process follows and no deviation alarm stands while it does (needs a setpoint)."""


class OnAlarm(StrictModel):
    """What a newly raised alarm of each priority does to a running phase."""

    critical: Reaction = "hold"
    high: Reaction = "nothing"
    medium: Reaction = "nothing"
    low: Reaction = "nothing"


class PhaseConfig(StrictModel):
    name: str = Field(pattern=PHASE_NAME)
    description: str = ""
    loops: dict[str, PhaseLoop] = Field(default_factory=dict)
    feed: FeedStrategy = Field(default_factory=FixedFeed)
    bolus: list[PhaseBolus] = Field(default_factory=list)
    exit: list[PhaseExit] = Field(default_factory=list)
    hold: HoldOutputs = Field(default_factory=HoldOutputs)
    on_alarm: OnAlarm = Field(default_factory=OnAlarm)
    on_interlock: Reaction = "hold"
    """An interlock trip: the interlock has already forced the outputs; `hold` (the default)
    stops the procedure from moving on while the process is out of hand."""


class RecipeConfig(StrictModel):
    """`[reactor.recipe]`: the procedure."""

    name: str = "recipe"
    autostart: bool = True
    """Start at the run's start (unattended); false waits in `idle` for an operator's `start`."""
    on_restart: Literal["held", "resume"] = "held"
    """After a controller crash: `held` (the default) waits for an operator's `restart`;
    `resume` carries on where it was."""
    phase: list[PhaseConfig] = Field(min_length=1)

    @field_validator("phase")
    @classmethod
    def _a_procedure(cls, phases: list[PhaseConfig]) -> list[PhaseConfig]:
        """Names unique, every `next` a phase, every phase with a way out and reachable."""
        names: dict[str, int] = {}
        for i, phase in enumerate(phases):
            if phase.name in names or phase.name == COMPLETE:
                raise ValueError(f"[{i}].name = {phase.name!r}: " + (
                    "'complete' is the end of the procedure, not a phase" if phase.name
                    == COMPLETE else f"already the name of phase[{names[phase.name]}]"))
            names[phase.name] = i
        for i, phase in enumerate(phases):
            _check_reads(i, phase)
            _check_manual(i, phase)
        for i, phase in enumerate(phases):
            if not phase.exit:
                raise ValueError(f"[{i}] ({phase.name}).exit: the phase has no way out: give it "
                                 "at least one [[reactor.recipe.phase.exit]] with a `when`")
            for k, exit_ in enumerate(phase.exit):
                if exit_.next is not None and exit_.next != COMPLETE \
                        and exit_.next not in names:
                    raise ValueError(
                        f"[{i}] ({phase.name}).exit[{k}].next = {exit_.next!r}: no such phase "
                        f"(allowed: {', '.join([*names, COMPLETE])})")
        reached = _reachable(phases, names)
        for i, phase in enumerate(phases):
            if i not in reached:
                raise ValueError(f"[{i}] ({phase.name}): unreachable: no exit of a phase that "
                                 f"runs leads to it (phases run from {phases[0].name!r})")
        return phases

    def next_of(self, index: int, exit_: PhaseExit) -> int | None:
        """The phase an exit leads to (its index), None for `complete`."""
        if exit_.next is None:
            return index + 1 if index + 1 < len(self.phase) else None
        if exit_.next == COMPLETE:
            return None
        return [p.name for p in self.phase].index(exit_.next)


def recipe_reads_where(recipe: RecipeConfig) -> list[tuple[str, str]]:
    """(key, name) of every channel or estimate the recipe reads, in file order: the key
    (`phase[1] (growth).exit[0].when = '...'`) for an error that names the phase."""
    reads: list[tuple[str, str]] = []
    for i, phase in enumerate(recipe.phase):
        where = f"phase[{i}] ({phase.name})"
        for k, exit_ in enumerate(phase.exit):
            reads.extend((f"{where}.exit[{k}].when = {exit_.when!r}", c.operand)
                         for c in comparisons(exit_.condition) if c.operand not in CLOCKS)
        if not isinstance(phase.feed, FixedFeed):
            reads.append((f"{where}.feed.source = {phase.feed.source!r}", phase.feed.source))
    return reads


def _check_manual(i: int, phase: PhaseConfig) -> None:
    """A loop in manual mode holds an output, and only manual mode holds one."""
    for name, setting in phase.loops.items():
        where = f"[{i}] ({phase.name}).loops.{name}"
        if setting.mode == "manual" and setting.output is None:
            raise ValueError(f"{where}.mode = 'manual': needs an output to hold (add output = "
                             "the value to hold, in the loop's output unit)")
        if setting.output is not None and setting.mode != "manual":
            raise ValueError(f"{where}.output = {setting.output}: held in manual mode only "
                             "(add mode = 'manual')")
        if setting.ramp_per_h is not None and setting.setpoint is None:
            raise ValueError(f"{where}.ramp_per_h = {setting.ramp_per_h}: ramps the setpoint, "
                             "and none is given (add setpoint = the value to ramp to)")


def _check_reads(i: int, phase: PhaseConfig) -> None:
    """Every condition parses and every channel the phase reads exists."""
    where = f"[{i}] ({phase.name})"
    for k, exit_ in enumerate(phase.exit):
        try:
            condition = parse_condition(exit_.when)
            for compare in comparisons(condition):
                if compare.operand not in CLOCKS:
                    _known(compare.operand)
        except ValueError as exc:
            raise ValueError(f"{where}.exit[{k}].when = {exit_.when!r}: {exc}") from None
    feed = phase.feed
    if isinstance(feed, FixedFeed):
        return
    try:
        unit = _known(feed.source).unit
    except ValueError as exc:
        raise ValueError(f"{where}.feed.source = {feed.source!r}: {exc}") from None
    if isinstance(feed, CellSpecificFeed) and unit != "cells/mL":
        raise ValueError(f"{where}.feed.source = {feed.source!r}: not a cell density "
                         "(cells/mL): use est_viable_cells_per_ml or viable_cells_per_ml")


def _known(name: str) -> Channel:
    """An input or estimate a recipe may read; its ValueError says which exist (inputs only)."""
    try:
        return input_channel(name)
    except ValueError:
        inputs = [c.name for c in CHANNELS if c.direction is Direction.INPUT]
        raise ValueError(f"unknown channel {name!r} (allowed: {', '.join(CLOCKS)}, the inputs "
                         f"{', '.join(inputs)}, and the estimates "
                         f"{', '.join(ESTIMATE_CHANNELS)})") from None


def _reachable(phases: list[PhaseConfig], names: dict[str, int]) -> set[int]:
    seen = {0}
    todo = [0]
    while todo:
        i = todo.pop()
        for exit_ in phases[i].exit:
            if exit_.next is None:
                j = i + 1 if i + 1 < len(phases) else None
            else:
                j = names.get(exit_.next)
            if j is not None and j not in seen:
                seen.add(j)
                todo.append(j)
    return seen
