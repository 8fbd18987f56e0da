"""The `[reactor.chamber]` table: what an emulated chamber is set up with, checked once.

A pydantic model like the controller's config (unknown keys refused, values frozen), so the
person editing the TOML file gets the same kind of error on both sides: the key, the value and
what is allowed. The fault list is parsed first by `sim_hardware.faults.specs` (each fault type
has its own keys), and held here as checked `FaultSpec`s.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, InstanceOf, StrictBool, ValidationError, create_model

from drivers.contract.validation import Number, StrictModel, format_validation_error
from sim_hardware.faults.specs import FaultSpec, parse_faults
from sim_hardware.model.parameters import (
    INITIAL_CONDITION_TABLE,
    InitialConditions,
    ParameterOptions,
)

_INITIAL_FIELDS = {"initial_volume_ml": "volume_ml",
                   "seeding_cells_per_ml": "seeding_cells_per_ml",
                   "initial_temperature_c": "temperature_c", "initial_o2_pct": "o2_pct",
                   "initial_co2_pct": "co2_pct"}
"""Option name -> `InitialConditions` field."""


class _ChamberKeys(StrictModel):
    microgravity: StrictBool = False
    donor_variability: StrictBool = Field(
        default=False, description="draw this run's donor: biological parameters vary by seed")
    parameters: ParameterOptions = Field(
        default_factory=ParameterOptions, description="model parameter = value (docs/model.md)")
    faults: tuple[InstanceOf[FaultSpec], ...] = ()

    def initial_conditions(self) -> InitialConditions:
        """Where the run starts: the defaults, with the initial_* options set here."""
        set_here = {_INITIAL_FIELDS[name]: getattr(self, name) for name in _INITIAL_FIELDS
                    if getattr(self, name) is not None}
        return InitialConditions(**set_here)


if TYPE_CHECKING:
    class ChamberOptions(_ChamberKeys):
        """For type checkers only (mypy cannot follow `create_model`): the class generated below,
        one field per row of INITIAL_CONDITION_TABLE, in its order (a unit test compares them)."""

        initial_volume_ml: float | None = None
        seeding_cells_per_ml: float | None = None
        initial_temperature_c: float | None = None
        initial_o2_pct: float | None = None
        initial_co2_pct: float | None = None
else:
    ChamberOptions = create_model(
        "ChamberOptions",
        __base__=_ChamberKeys,
        __module__=__name__,
        **{s.name: (Number | None, Field(None, ge=s.low, le=s.high, description=(
            f"{s.unit}: {s.description}" + ("" if math.isnan(s.default) else
                                             f" (default {s.default:g})"))))
           for s in INITIAL_CONDITION_TABLE},
    )
    """The checked `[reactor.chamber]` table."""


def parse_options(options: Mapping[str, Any]) -> _ChamberKeys:
    """The `[reactor.chamber]` table checked; a ValueError naming each bad key otherwise.

    The controller prefixes its errors with the reactor (`reactor[0].chamber: ...`).
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"chamber options {options!r} must be a table of option = value")
    table = dict(options)
    table["faults"] = parse_faults(table.get("faults"))
    try:
        return ChamberOptions.model_validate(table)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "chamber options", ChamberOptions)) from None
