"""How configuration is checked and how its errors read, on both sides of the contract.

The controller's run config and the emulated device's options (`[reactor.chamber]`, `[[fault]]`)
are written by the same person in the same TOML file, so they are validated the same way
(pydantic models that forbid unknown keys) and their errors read the same way: the key, the value,
and what is allowed (`reactor[0].loops.ph.setpoint = 9.0: ... (allowed: 5.5 <= value <= 8.5)`).
It lives in `drivers` because `sim_hardware` must not import `controller`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from drivers.contract.datasheet import Direction, channel
from drivers.contract.durations import parse_duration_s

Seconds = Annotated[float, BeforeValidator(parse_duration_s)]
"""A duration field: `14d`, `36h`, `90m`, `30s` or a number of seconds."""


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):  # an int subclass: `rate = true` is a mistake, not 1.0
        raise ValueError("must be a number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_refuse_bool)]
"""A number field that refuses booleans (pydantic would read `true` as 1.0)."""


class StrictModel(BaseModel):
    """A config table: unknown keys are errors (a typo must not be silently ignored), values are
    frozen once checked, and NaN/infinity are refused (`at = nan` would pass every `< 0` check)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_channel(name: str, direction: Direction) -> str:
    """`name` if it is a datasheet channel of that direction; a ValueError naming it otherwise."""
    try:
        ch = channel(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    if ch.direction is not direction:
        raise ValueError(f"channel {name!r} is an {ch.direction.value}, expected an "
                         f"{direction.value}")
    return name


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                 "finite_number"}


def format_validation_error(exc: ValidationError, source: str, root: type[BaseModel],
                            tagged: Mapping[str, type[BaseModel]] | None = None,
                            secret: frozenset[str] = frozenset()) -> str:
    """Every problem of `exc`, one per line under `source`: `key = value: message (allowed: ...)`.

    `root` is the model that was validated (to find each field's declared bounds and, for an
    unknown key, the keys allowed there); `tagged` maps the tags of discriminated unions, which
    pydantic puts into error locations, to their member models. The values of keys named in
    `secret` (a key, a password hash, or a password typed where a hash belongs) are never
    printed: an error message ends up in terminals, logs and bug reports.
    """
    walker = _Walker(root, dict(tagged or {}), secret)
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        lines.append("  " + walker.describe(error))
    return "\n".join(lines)


class _Walker:
    def __init__(self, root: type[BaseModel], tagged: dict[str, type[BaseModel]],
                 secret: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.tagged = tagged
        self.secret = secret

    def describe(self, error: Any) -> str:
        loc = error["loc"]
        key = self.dotted(loc)
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            model, _ = self.walk(loc[:-1])
            allowed = ", ".join(getattr(model, "model_fields", {})) or "none"
            return f"{key}: unknown key (allowed here: {allowed})"
        if error["type"] == "missing":
            return f"{key}: required key missing"
        message = error["msg"].removeprefix("Value error, ")
        first_word = message.split(" ", 1)[0]
        if isinstance(value, dict) and first_word in value:
            # A cross-field rule: point at the field the message is about.
            key, value = f"{key}.{first_word}", value[first_word]
            message = message.split(" ", 1)[1].removeprefix(f"{value} ")
        allowed = self.allowed_range(loc)
        if allowed and error["type"] in _BOUND_ERRORS:
            message = f"{message} (allowed: {allowed})"
        if (isinstance(value, list) and message.startswith("[")) \
                or (isinstance(value, dict) and message.startswith(".")):
            # A rule pointing inside the value: a list's at an element (`[2].name = 'x': ...`),
            # a table's at a key below it (`.phase[1] (growth).loops.ph: ...`).
            return f"{key}{message}"
        if not key:  # a rule of the whole file: its message names the keys it is about
            return message
        if isinstance(value, (dict, list)) or key.rsplit(".", 1)[-1] in self.secret:
            return f"{key}: {message}"
        return f"{key} = {value!r}: {message}"

    def dotted(self, loc: tuple[Any, ...]) -> str:
        out = ""
        for i, part in enumerate(loc):
            if isinstance(part, int):
                out += f"[{part}]"
            elif self.is_union_tag(loc, i):
                continue
            else:
                out += f".{part}" if out else str(part)
        return out

    def walk(self, loc: tuple[Any, ...]) -> tuple[Any, Any]:
        """(model, field) found by walking `loc` from the root; dict keys are skipped."""
        model: Any = self.root
        field: Any = None
        skip_key = False
        for i, part in enumerate(loc):
            if isinstance(part, int):
                continue
            if self.is_union_tag(loc, i):  # which member of a union the rest is about
                model = self.tagged[part]
                continue
            if skip_key:  # the key of a dict of models (a loop's name): stay on the value model
                skip_key = False
                continue
            field = getattr(model, "model_fields", {}).get(part)
            if field is None:
                return None, None
            inner = _model_in(field.annotation)
            skip_key = inner is not None and getattr(field.annotation, "__origin__", None) is dict
            if inner is not None:
                model = inner
        return model, field

    def is_union_tag(self, loc: tuple[Any, ...], i: int) -> bool:
        """A tagged union's member name, which pydantic puts in the location after a list index."""
        return i > 0 and isinstance(loc[i - 1], int) and loc[i] in self.tagged

    def allowed_range(self, loc: tuple[Any, ...]) -> str:
        """`0.01 <= value <= 3600` from the field's declared bounds, or '' if it has none."""
        _, field = self.walk(loc)
        if field is None:
            return ""
        low = high = ""
        for rule in field.metadata:
            for attr, text in (("ge", "<="), ("gt", "<")):
                if getattr(rule, attr, None) is not None:
                    low = f"{getattr(rule, attr)} {text} "
            for attr, text in (("le", "<="), ("lt", "<")):
                if getattr(rule, attr, None) is not None:
                    high = f" {text} {getattr(rule, attr)}"
        return f"{low}value{high}" if low or high else ""


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
