"""`[[reactor]]`: one reactor's device, loops, schedule, safety tables and alarms, checked
against each other (one loop per output, alarms that fit the loops).

A reactor's `chamber` table belongs to its device backend and passes through untouched: the
controller does not know an emulator's parameters, the backend validates them itself.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from controller.alarms.defaults import default_alarms
from controller.alarms.spec import AlarmBoardConfig, AlarmConfig, AlarmEntry, AlarmRemoval
from controller.config.loops import LoopConfig
from controller.config.recipe import RecipeConfig, recipe_reads_where
from controller.config.remote import TOPIC_ID_PATTERN
from controller.config.safety import (
    InterlocksConfig,
    QualityConfig,
    default_safe_state,
)
from controller.config.schedule import ScheduleConfig
from controller.config.soft_sensor import SoftSensorConfig
from controller.config.standardisation import (
    ProbeStandardisationConfig,
    check_standardised_channels,
    merged_standardisation,
)
from controller.config.volume_balance import VolumeBalanceConfig
from drivers.contract.datasheet import PUMPS, Direction, Kind, channel
from drivers.contract.validation import StrictModel, check_channel


class ReactorConfig(StrictModel):
    id: str = Field(pattern=TOPIC_ID_PATTERN)
    device: str = "sim://"
    chamber: dict[str, Any] = Field(default_factory=dict)
    loops: dict[str, LoopConfig] = Field(default_factory=dict)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    safe_state: dict[str, float] = Field(default_factory=default_safe_state)
    quality: dict[str, QualityConfig] = Field(default_factory=dict)
    # model_validate: the supply tables are filled by a validator, which a type checker
    # reading the fields does not see (it would ask for them in InterlocksConfig()).
    interlocks: InterlocksConfig = Field(
        default_factory=lambda: InterlocksConfig.model_validate({}))
    alarm: list[AlarmEntry] = Field(
        default_factory=list, description="`[[reactor.alarm]]`: alarms on top of the defaults; "
        "one named like a default replaces it, `enabled = false` removes that default")
    alarm_board: AlarmBoardConfig = Field(default_factory=AlarmBoardConfig)
    volume_balance: VolumeBalanceConfig = Field(default_factory=VolumeBalanceConfig)
    standardisation: dict[str, ProbeStandardisationConfig] = Field(
        default_factory=lambda: ReactorConfig._default_standardisation(),
        description="`[reactor.standardisation.<channel>]`: probes re-standardised against an "
        "offline reference (ph and do_pct_air by default)")
    soft_sensor: SoftSensorConfig = Field(default_factory=SoftSensorConfig)
    recipe: RecipeConfig | None = Field(
        default=None, description="`[reactor.recipe]`: phases that run the culture by its "
        "state (docs/recipes.md); replaces the schedule's perfusion and boluses")

    @staticmethod
    def _default_standardisation() -> dict[str, ProbeStandardisationConfig]:
        return {name: ProbeStandardisationConfig(**table)
                for name, table in merged_standardisation({}).items()}

    @field_validator("standardisation", mode="before")
    @classmethod
    def _standardisation_defaults(cls, tables: Any) -> Any:
        return merged_standardisation(tables)

    @field_validator("standardisation")
    @classmethod
    def _standardisation_channels(
            cls, tables: dict[str, ProbeStandardisationConfig],
    ) -> dict[str, ProbeStandardisationConfig]:
        return check_standardised_channels(tables)

    @field_validator("alarm")
    @classmethod
    def _alarms_fit_the_reactor(cls, entries: list[AlarmConfig | AlarmRemoval],
                                info: ValidationInfo) -> list[AlarmConfig | AlarmRemoval]:
        """Errors start `[i].key = value:` so the message points at the table (see
        format_validation_error). Needs the loops (declared above): a deviation alarm compares
        with a loop's setpoint, and the default alarms to remove come from the loops."""
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry.name in seen:
                raise ValueError(f"[{i}].name = {entry.name!r}: already used by alarm"
                                 f"[{seen[entry.name]}]; one table per alarm name")
            seen[entry.name] = i
        loops = info.data.get("loops")
        if loops is None:  # the loops have their own errors
            return entries
        pvs = sorted({loop.pv for loop in loops.values()})
        for i, entry in enumerate(entries):
            if isinstance(entry, AlarmConfig) and entry.kind == "deviation" \
                    and entry.channel not in pvs:
                raise ValueError(f"[{i}].channel = {entry.channel!r}: a deviation alarm "
                                 "compares with a loop's setpoint, and no loop here measures "
                                 f"it (allowed: a loop's pv: {', '.join(pvs) or 'no loops'})")
        removals = [(i, e) for i, e in enumerate(entries) if isinstance(e, AlarmRemoval)]
        if removals:
            # Setpoints against the limits: controller/config/safety_check.py, after this.
            defaults = [a.name for a in default_alarms(loops, check_setpoints=False)]
            for i, removal in removals:
                if removal.name not in defaults:
                    raise ValueError(f"[{i}].name = {removal.name!r}: enabled = false removes a "
                                     "default alarm, and there is none by that name (allowed: "
                                     f"{', '.join(defaults)})")
        return entries

    @field_validator("recipe")
    @classmethod
    def _recipe_fits_the_loops(cls, recipe: RecipeConfig | None,
                               info: ValidationInfo) -> RecipeConfig | None:
        """A phase's loop settings name this reactor's loops, within their operator bounds; the
        estimates it reads come from an enabled soft sensor; the schedule does not feed too.
        Errors start `.phase[i] (name).key` so the line names the phase and the key."""
        if recipe is None:
            return recipe
        schedule = info.data.get("schedule")
        if schedule is not None and (schedule.perfusion or schedule.bolus):
            raise ValueError("a reactor feeds by its recipe or by [reactor.schedule]'s "
                             "perfusion and boluses, not both (remove the schedule's: the "
                             "recipe's phases give rates and boluses)")
        sensor = info.data.get("soft_sensor")
        if sensor is not None and not sensor.enabled:
            for where, name in recipe_reads_where(recipe):
                if name.startswith("est_"):
                    raise ValueError(f".{where}: reads {name}, and [reactor.soft_sensor] "
                                     "enabled = false: the estimate would never come (enable "
                                     "the soft sensor, or read an input)")
        loops = info.data.get("loops")
        if loops is None:
            return recipe
        for i, phase in enumerate(recipe.phase):
            for name, setting in phase.loops.items():
                where = f".phase[{i}] ({phase.name}).loops.{name}"
                if name not in loops:
                    raise ValueError(f"{where}: no loop {name!r} (allowed: "
                                     f"{', '.join(loops) or 'no loops'})")
                loop = loops[name]
                low, high = loop.min_setpoint, loop.max_setpoint
                if setting.setpoint is not None and not low <= setting.setpoint <= high:
                    raise ValueError(f"{where}.setpoint = {setting.setpoint}: outside the "
                                     f"loop's operator bounds (allowed: {low} <= value <= "
                                     f"{high})")
                out_low, out_high = loop.output_min, loop.output_max
                if setting.output is not None and not out_low <= setting.output <= out_high:
                    raise ValueError(f"{where}.output = {setting.output}: outside the loop's "
                                     f"output range (allowed: {out_low} <= value <= {out_high} "
                                     f"{loop.mv})")
        return recipe

    @field_validator("quality")
    @classmethod
    def _quality_on_inputs(cls, tables: dict[str, QualityConfig]) -> dict[str, QualityConfig]:
        for name, table in tables.items():
            check_channel(name, Direction.INPUT)
            if table.noise_sd_max is not None and channel(name).kind is Kind.SAMPLED:
                raise ValueError(f"{name}.noise_sd_max: {name} is an at-line result, sampled "
                                 "hours apart; the noise check is for continuous probes")
        return tables

    @field_validator("safe_state")
    @classmethod
    def _safe_state_complete(cls, state: dict[str, float]) -> dict[str, float]:
        merged = {**default_safe_state(), **state}
        for name, value in merged.items():
            ch = channel(check_channel(name, Direction.OUTPUT))
            if not ch.contains(value):
                raise ValueError(f"{name} {value} outside [{ch.minimum}, {ch.maximum}] {ch.unit}")
        return merged

    @model_validator(mode="after")
    def _one_loop_per_output(self) -> ReactorConfig:
        owners: dict[str, str] = {}
        for name, loop in self.loops.items():
            if loop.mv in owners:
                raise ValueError(f"loops {owners[loop.mv]!r} and {name!r} both drive {loop.mv}")
            owners[loop.mv] = name
        scheduled = set(PUMPS) & owners.keys()
        feeds = self.schedule.perfusion or self.schedule.bolus or self.recipe is not None
        if scheduled and feeds:
            raise ValueError(f"{sorted(scheduled)} driven by both a loop and the "
                             + ("recipe" if self.recipe is not None else "schedule"))
        return self
