"""The sweep file: a base config, a duration, and axes (or a list of cases) of config values.

    base = "../hsc_expansion.toml"          # relative to this file
    duration = "2d"
    [axes]
    seed = [1, 2, 3, 4]                      # short for "run.seed"
    "reactor.chamber.microgravity" = [false, true]

Axis paths are checked against the config's own models before anything runs, so a typo names
the key and what is allowed there, as a config's errors do.
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from controller.config import (
    ConfigError,
    ReactorConfig,
    RunConfig,
    parse_toml,
    read_toml_text,
)
from drivers.contract.validation import Seconds, StrictModel, format_validation_error

SEED = "seed"
CONFIG = "config"
FAULTS = "faults"
SPECIAL_AXES = {SEED: "run.seed", CONFIG: "whole configs, paths relative to the sweep file",
                FAULTS: "fault lists ([[fault]] entries or NAME@TIME strings, as --fault)"}
_SET_BY_SWEEP = {"run.duration": "the sweep's `duration` sets it",
                 "run.speed": "sweeps run in virtual time ('max')"}


MAX_CASES = 10_000
"""[est] The most cases one sweep may have. Each is checked as a whole config before anything
runs (~8.5 ms a case on the 2-core machine: 10,000 take ~85 s), and held in memory meanwhile: a
product of a few long axes (10^6 cases) would sit for hours, then run out of memory, before its
first run. At 20 s a two-day culture, 10,000 runs are over a day of two cores anyway."""


class SweepError(ConfigError):
    """A sweep file that cannot be run; reported like a config error (one line each, exit 2)."""


class SweepFile(StrictModel):
    base: str | None = Field(default=None, description="the config every case starts from, "
                             "relative to the sweep file (optional with a `config` axis)")
    duration: Seconds = Field(gt=0, description="each run's simulated time, e.g. 2d")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="cartesian product")
    case: list[dict[str, Any]] = Field(default_factory=list, description="declared cases")

    @model_validator(mode="after")
    def _axes_or_cases(self) -> SweepFile:
        if bool(self.axes) == bool(self.case):
            raise ValueError("give either [axes] (every combination is run) or [[case]] "
                             "tables (each run once), not both or neither")
        for name, values in self.axes.items():
            if not values:
                raise ValueError(f"axes.{name} is empty: give at least one value")
        keys = set(self.axes) | {k for case in self.case for k in case}
        if self.base is None and CONFIG not in keys:
            raise ValueError("base: missing (the config the cases start from); it may only "
                             "be left out when a `config` axis names whole configs")
        return self


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file: where it is, what it runs, and its cases' axis values."""

    path: Path
    base: Path | None
    duration_s: float
    axes: tuple[str, ...]
    cases: tuple[dict[str, Any], ...]


def load_sweep(path: Path | str) -> Sweep:
    """Read and check a sweep file; SweepError names the key and what is allowed."""
    path = Path(path)
    try:
        data = parse_toml(read_toml_text(path, "sweep file"), str(path))
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        raise SweepError(format_validation_error(exc, str(path), SweepFile)) from None
    _check_size(path, spec)
    if spec.axes:
        axes = tuple(spec.axes)
        cases = expand_axes(spec.axes)
    else:
        axes = tuple(dict.fromkeys(k for case in spec.case for k in case))
        cases = [{k: case.get(k) for k in axes if k in case} for case in spec.case]
    where = ({axis: f"axes.{axis}" for axis in axes} if spec.axes else
             {axis: f"case[{next(i for i, c in enumerate(spec.case) if axis in c)}].{axis}"
              for axis in axes})
    problems = [problem for axis in axes
                if (problem := axis_problem(axis, where[axis])) is not None]
    if problems:
        raise SweepError("\n  ".join([f"{path}: {len(problems)} problem(s)", *problems]))
    base = None if spec.base is None else path.parent / spec.base
    for i, case in enumerate(cases):
        for key in (CONFIG, FAULTS):
            if key in case:
                _check_kind(path, f"axes.{key}" if spec.axes else f"case[{i}].{key}",
                            key, case[key])
    return Sweep(path, base, spec.duration, axes, tuple(cases))


def _check_size(path: Path, spec: SweepFile) -> None:
    """At most MAX_CASES cases, counted before a single one is built."""
    count = math.prod(len(v) for v in spec.axes.values()) if spec.axes else len(spec.case)
    if count > MAX_CASES:
        made = (" x ".join(f"{len(v)} {name}" for name, v in spec.axes.items())
                if spec.axes else "[[case]] tables")
        raise SweepError(f"{path}: {count:,} cases ({made}); at most {MAX_CASES:,} in one "
                         "sweep (each is checked as a config before any runs): split it into "
                         "smaller sweeps, each with its own --out")


def expand_axes(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last axis varying fastest (as nested loops in file order)."""
    cases: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        cases = [{**case, name: value} for case in cases for value in values]
    return cases


def _check_kind(path: Path, key: str, axis: str, value: Any) -> None:
    if axis == CONFIG and not isinstance(value, str):
        raise SweepError(f"{path}: {key} = {value!r}: a config file path (a string)")
    if axis == FAULTS and not (isinstance(value, list) and all(
            isinstance(f, (str, dict)) for f in value)):
        raise SweepError(f"{path}: {key} = {value!r}: each value a list of faults, "
                         "NAME@TIME[:k=v,...] strings or {name, at, ...} tables "
                         "(docs/faults.md); [] for none")


def axis_problem(axis: str, where: str | None = None) -> str | None:
    """Why `axis` names no config value (None when it does); the message starts with `where`,
    the key as the file wrote it (`axes.<axis>`, or `case[i].<axis>` for [[case]] tables)."""
    where = where or f"axes.{axis}"
    if axis in SPECIAL_AXES:
        return None
    if axis in _SET_BY_SWEEP:
        return f"{where}: cannot be swept: {_SET_BY_SWEEP[axis]}"
    root, _, rest = axis.partition(".")
    roots = {"run": RunConfig, "reactor": ReactorConfig}
    allowed = f"{', '.join(sorted(SPECIAL_AXES))}, run.<key>, reactor.<key>"
    if root not in roots or not rest:
        return f"{where}: unknown axis (allowed: {allowed})"
    return _path_problem(roots[root], root, rest.split("."), where)


def _path_problem(annotation: Any, at: str, parts: list[str], where: str) -> str | None:
    """Walk `parts` through a model's fields, dicts (any key) and optionals."""
    if not parts:
        return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        head = parts[0]
        fields = annotation.model_fields
        if head not in fields:
            return (f"{where}: {at} has no key {head!r} (allowed: "
                    f"{', '.join(sorted(fields))})")
        return _path_problem(fields[head].annotation, f"{at}.{head}", parts[1:], where)
    if typing.get_origin(annotation) is dict:
        value_type = typing.get_args(annotation)[1]
        return _path_problem(value_type, f"{at}.{parts[0]}", parts[1:], where)
    if annotation is Any:
        return None  # a table its backend validates (reactor.chamber): checked per case
    return f"{where}: {at} is a single value, it has no key {parts[0]!r}"


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
