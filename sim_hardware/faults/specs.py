"""Fault specs: which catalogue fault to inject, when, for how long, with which parameters.

Specs come from the command line (`NAME@TIME[:key=value,...]`, `parse_fault`) or from TOML
`[[fault]]` tables (`fault_from_table`). Each fault type's keys are checked by a pydantic model
generated from its catalogue row (unknown keys refused, numbers within the row's range, choices
from the row's list), and errors read like the controller's config errors: the fault, the key,
the value and what is allowed. Times are read by `drivers.contract.durations`, the parser the
controller uses for its config.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, ValidationError, create_model, field_validator

from drivers.contract.validation import Number, Seconds, StrictModel, format_validation_error
from sim_hardware.faults.catalogue import CATALOGUE, FAULTS, FaultParam, FaultType


@dataclass(frozen=True)
class FaultSpec:
    """One fault to inject: a catalogue name, when, for how long, with which parameters."""

    name: str
    at_s: float
    duration_s: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.at_s + self.duration_s

    @property
    def type(self) -> FaultType:
        return FAULTS[self.name]

    def active(self, t_s: float) -> bool:
        return self.at_s <= t_s < self.end_s

    def label(self) -> str:
        """The spec in command-line form (for messages and reports)."""
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in self.params.items()]
        if self.duration_s is not None:
            parts.append(f"duration={self.duration_s:g}s")
        return f"{self.name}@{self.at_s:g}s" + (":" + ",".join(parts) if parts else "")


# ------------------------------------------------------------------- one model per fault type
class _FaultKeys(StrictModel):
    """The keys every fault takes; each fault type's model adds its catalogue parameters."""

    fault: ClassVar[FaultType]
    at: Seconds
    duration: Seconds | None = Field(default=None, gt=0)

    @field_validator("duration")
    @classmethod
    def _ends_if_it_can(cls, value: float | None) -> float | None:
        if value is not None and not cls.fault.allows_duration:
            name = cls.fault.name
            raise ValueError(f"not allowed; a {name} does not end (omit duration)")
        return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return check


def _param_field(param: FaultParam) -> tuple[Any, Any]:
    if param.choices is not None:
        annotation: Any = Annotated[str, AfterValidator(_one_of(param.choices))]
    else:
        annotation = Number | None if param.by_channel is not None else Number
    required = param.default is None and param.by_channel is None
    default = ... if required else param.default
    return annotation, Field(default, gt=param.gt, ge=param.ge, le=param.le,
                             description=f"{param.unit}: {param.description}")


def _keys_model(fault: FaultType) -> type[_FaultKeys]:
    fields: dict[str, Any] = {p.name: _param_field(p) for p in fault.params}
    model = create_model(fault.name, __base__=_FaultKeys, __module__=__name__, **fields)
    model.fault = fault
    return model


_KEYS: dict[str, type[_FaultKeys]] = {f.name: _keys_model(f) for f in CATALOGUE}


def _known() -> str:
    return ", ".join(FAULTS)


def make_fault(name: Any, at: Any, duration: Any = None, **params: Any) -> FaultSpec:
    """A checked FaultSpec; missing parameters take their (per-channel) defaults."""
    table = {"at": at, **({} if duration is None else {"duration": duration}), **params}
    return _checked(name, table, f"fault {name}")


def _checked(name: Any, table: Mapping[str, Any], source: str) -> FaultSpec:
    """`table` (at, duration?, parameters) checked by the fault type's model; errors under
    `source`."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known faults: {_known()}")
    keys = _KEYS[name]
    try:
        checked = keys.model_validate(table)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, source, keys)) from None
    values = {p.name: getattr(checked, p.name) for p in keys.fault.params}
    for p in keys.fault.params:  # after the channel is known: its per-channel defaults
        if p.by_channel is not None and values[p.name] is None:
            values[p.name] = p.by_channel[values["channel"]]
    return FaultSpec(name, checked.at, checked.duration, values)


def parse_fault(spec: str) -> FaultSpec:
    """`NAME@TIME[:key=value,...]`, e.g. `co2_supply_lost@3d`, `sensor_stuck@2d:channel=ph`,
    `sensor_drift@1d:channel=ph,rate_per_h=0.002,duration=12h`."""
    if not isinstance(spec, str):
        raise ValueError(f"fault spec {spec!r} must be a string NAME@TIME[:key=value,...]")
    head, sep, tail = spec.strip().partition(":")
    name, at_sep, at = head.partition("@")
    name = name.strip()
    if name not in FAULTS:
        raise ValueError(f"fault spec {spec!r}: unknown fault {name!r}; known faults: "
                         f"{_known()}")
    if not at_sep or not at.strip():
        raise ValueError(f"fault spec {spec!r}: missing start time; write {name}@TIME, "
                         f"e.g. {name}@36h")
    params: dict[str, str] = {}
    if sep:
        for item in tail.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"fault spec {spec!r}: {item!r} is not key=value")
            params[key.strip()] = value.strip()
    return _checked(name, {"at": at.strip(), **params}, f"fault spec {spec!r}")


def fault_from_table(table: Mapping[str, Any]) -> FaultSpec:
    """A TOML `[[fault]]` table: {name, at, duration?, ...params}."""
    if not isinstance(table, Mapping):
        raise ValueError(f"[[fault]] entry {table!r} must be a table with name and at")
    if "name" not in table:
        raise ValueError(f"[[fault]] {dict(table)!r}: missing key name; known faults: "
                         f"{_known()}")
    name = table["name"]
    if name not in FAULTS:
        raise ValueError(f"[[fault]] name={name!r}: unknown fault; known faults: {_known()}")
    return _checked(name, {k: v for k, v in table.items() if k != "name"}, f"fault {name}")


def parse_faults(entries: Any) -> tuple[FaultSpec, ...]:
    """The chamber option `faults`: a list of spec strings, tables or FaultSpecs."""
    if entries is None:
        return ()
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Iterable):
        raise ValueError(f"chamber option faults={entries!r} must be a list of fault specs "
                         "(NAME@TIME[:key=value,...]) or tables {name, at, ...}")
    out = []
    for entry in entries:
        if isinstance(entry, FaultSpec):
            out.append(make_fault(entry.name, entry.at_s, entry.duration_s, **entry.params))
        elif isinstance(entry, str):
            out.append(parse_fault(entry))
        else:
            out.append(fault_from_table(entry))
    return tuple(out)
