"""A sweep's cases as runs: each case's config (the base with the case's values set), checked
as a config file is, and a run id derived from that config, so a re-run finds its runs."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import Config, ConfigError, parse_toml, read_toml_text, validate_config
from controller.runtime.run import open_reactor_driver
from controller.sweep.spec import CONFIG, FAULTS, SEED, Sweep, SweepError

RUN_ID_HEX = 12
"""48 bits of the config's hash: a collision among a million runs has odds of about 1 in 500."""

MAX_CASE_PROBLEMS = 10
"""Refused cases listed; a bad value on an axis of a large sweep refuses hundreds alike."""


@dataclass(frozen=True)
class Case:
    """One run of the sweep: its axis values, its config and the id its records go under."""

    index: int
    values: dict[str, Any]
    config: Config
    config_text: str
    run_id: str

    @property
    def label(self) -> str:
        return case_label(self.values)


def case_label(values: dict[str, Any]) -> str:
    """`seed=1, reactor.chamber.microgravity=true`: how errors and the progress name a case."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "(no axes)"


def build_cases(sweep: Sweep) -> list[Case]:
    """Every case as a checked config; a value the config refuses is reported with its case."""
    texts: dict[Path, str] = {}
    cases: list[Case] = []
    problems: list[str] = []
    for index, values in enumerate(sweep.cases):
        try:
            cases.append(_build(sweep, index, values, texts))
        except ConfigError as exc:
            problems.append(f"case {index} ({case_label(values)}): {exc}")
    if problems:
        shown = problems[:MAX_CASE_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more case(s)")
        raise SweepError("\n  ".join([f"{sweep.path}: {len(problems)} case(s) refused",
                                      *(p.replace("\n", "\n    ") for p in shown)]))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.run_id in seen:
            raise SweepError(f"{sweep.path}: case {case.index} ({case.label}) runs the same "
                             f"config as case {seen[case.run_id].index} "
                             f"({seen[case.run_id].label}): remove one")
        seen[case.run_id] = case
    return cases


def _build(sweep: Sweep, index: int, values: dict[str, Any], texts: dict[Path, str]) -> Case:
    base = sweep.base
    if CONFIG in values:
        base = sweep.path.parent / values[CONFIG]
    assert base is not None  # the sweep file's model requires base or a config axis
    if base not in texts:
        texts[base] = read_toml_text(base, "config file")
    text = texts[base]
    data = apply_values(parse_toml(text, str(base)), values, sweep.duration_s)
    config = validate_config(data, str(base))
    for reactor in range(len(config.reactor)):  # the chamber's options and the faults
        open_reactor_driver(config, reactor, now=lambda: 0.0)
    header = "".join(f"# sweep {sweep.path.name}, case: {k} = {json.dumps(v)}\n"
                     for k, v in values.items())
    return Case(index, dict(values), config, header + text, run_id_of(config))


def apply_values(data: dict[str, Any], values: dict[str, Any],
                 duration_s: float) -> dict[str, Any]:
    """The config's tables with the case's values set; `reactor.*` paths set every reactor."""
    data = copy.deepcopy(data)
    run = data.setdefault("run", {})
    run["duration"] = duration_s
    run["speed"] = "max"
    for axis, value in values.items():
        if axis == CONFIG:
            continue
        if axis == SEED:
            run["seed"] = value
        elif axis == FAULTS:
            data["fault"] = [*data.get("fault", []), *value]
        else:
            root, *path = axis.split(".")
            tables = data.get("reactor", []) if root == "reactor" else [data.setdefault(root, {})]
            for table in tables:
                _set(table, path, value)
    return data


def _set(table: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        table = table.setdefault(key, {})
    table[path[-1]] = value


def run_id_of(config: Config) -> str:
    """The hash of the whole checked config: the same case (same seed, same values, same base)
    gets the same id on every re-run; editing the base file makes every case a new run."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_HEX]
