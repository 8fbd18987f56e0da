"""The whole config file: its root table, and reading and validating it with errors that name
key, value and rule."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from controller.alarms.spec import ALARM_ENTRY_MODELS
from controller.config.reactor import ReactorConfig
from controller.config.remote import MqttConfig, OperatorConfig
from controller.config.run import RunConfig
from controller.config.safety_check import safety_errors
from drivers.contract import validation
from drivers.contract.validation import StrictModel

DEFAULT_CONFIG = Path("configs/hsc_expansion.toml")


class ConfigError(ValueError):
    """A config that cannot be run; the message lists every problem, one per line."""


class Config(StrictModel):
    run: RunConfig = Field(default_factory=RunConfig)
    reactor: list[ReactorConfig] = Field(min_length=1)
    mqtt: MqttConfig | None = None
    operator: list[OperatorConfig] = Field(default_factory=list)
    fault: list[dict[str, Any] | str] = Field(
        default_factory=list,
        description="faults to inject into an emulated chamber (docs/faults.md); each table may "
                    "name its `reactor` (default: the first); the emulator validates the rest")

    def faults_for(self, index: int) -> list[Any]:
        """The `[[fault]]` entries aimed at reactor `index`, without their `reactor` key."""
        reactor_id = self.reactor[index].id
        chosen = []
        for entry in self.fault:
            if isinstance(entry, str):  # NAME@TIME[:k=v,...] from the command line
                target = self.reactor[0].id
            else:
                target = entry.get("reactor", self.reactor[0].id)
                entry = {k: v for k, v in entry.items() if k != "reactor"}
            if target == reactor_id:
                chosen.append(entry)
        return chosen

    @model_validator(mode="after")
    def _faults_name_known_reactors(self) -> Config:
        ids = {r.id for r in self.reactor}
        for i, table in enumerate(self.fault):
            target = table.get("reactor") if isinstance(table, dict) else None
            if target is not None and target not in ids:
                raise ValueError(f"fault[{i}].reactor {target!r} is not a reactor id "
                                 f"(known: {sorted(ids)})")
        return self

    @field_validator("reactor")
    @classmethod
    def _unique_ids(cls, reactors: list[ReactorConfig]) -> list[ReactorConfig]:
        ids = [r.id for r in reactors]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"reactor ids must be unique; repeated: {duplicates}")
        return reactors


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML config; ConfigError lists every problem with its key."""
    return parse_config(read_toml_text(Path(path), "config file"), source=str(path))


def read_toml_text(path: Path, what: str) -> str:
    """A TOML file's text (`what`: "config file", "sweep file" ...), read once, so that what is
    checked is what a run records; ConfigError saying why it cannot be: missing, a folder,
    unreadable, or not UTF-8 (TOML is UTF-8 by its specification; a file saved as Latin-1
    with a "°C" in a comment was a UnicodeDecodeError's traceback). A byte-order mark, which
    some Windows editors write, is dropped (tomllib calls it an invalid statement)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text, as a TOML {what} must be: byte "
                          f"0x{data[exc.start]:02x} on line {line}; save it as UTF-8") from None


def parse_config(text: str, source: str = "<config>") -> Config:
    return validate_config(parse_toml(text, source), source)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """A TOML file's tables (configs, sweep files, dashboard accounts); ConfigError naming
    `source` and where the syntax breaks."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def validate_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """A config's tables, already read (a sweep edits them first), checked as a file's are."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # Worded as the device's options' errors are: one formatter on both sides.
        raise ConfigError(validation.format_validation_error(
            exc, source, Config, ALARM_ENTRY_MODELS)) from None
    # The tables fit together; now whether they are safe (a safe state that heats, a setpoint
    # the interlocks or alarms would fight): refused here, before anything runs.
    problems = safety_errors(config)
    if problems:
        raise ConfigError("\n  ".join([f"{source}: {len(problems)} problem(s)", *problems]))
    return config
