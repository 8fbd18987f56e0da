"""Who may use the dashboard, in which role, and which operator actions each role may take.

The dashboard config is a TOML file (`bioreactor dashboard ... CONFIG`) with `[[account]]`
tables; each account is an `[[operator]]` of the controller (same `name`, and the same
`key_hex`/`key_file`: the dashboard signs that operator's commands with it) plus a `role` and an
argon2id `password_hash`. The accounts may instead (or also) live in a second TOML file named by
`accounts_file`, so the hashes and keys can sit in a mode-600 file apart from the settings.
docs/dashboard-security.md is the user's account of all of it.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import argon2
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from controller.config import ConfigError, parse_toml, read_toml_text
from controller.config.remote import OperatorConfig
from controller.dashboard.passwords import UNKNOWN_ACCOUNT_HASH, verify_password
from controller.operator.protocol import ACTIONS
from drivers.contract import validation
from drivers.contract.validation import Seconds, StrictModel

SECRET_KEYS = frozenset({"key_hex", "password_hash"})
"""Keys whose values an error message never repeats (a plain password typed where the hash
belongs would otherwise be printed to the terminal)."""


M = TypeVar("M", bound=StrictModel)


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"


OPERATOR_ACTIONS = frozenset({
    "ack_alarm", "shelve_alarm", "unshelve_alarm", "set_setpoint", "bolus", "pause_schedule",
    "resume_schedule", "hold", "restart", "confirm",
})
"""The shift's work: answering alarms, steering within the controller's bounds, pausing and
resuming the procedure. Not: taking a loop to manual or driving an output by hand, resetting an
interlock, taking an alarm out of service, or starting, stopping or aborting the recipe, which
bypass or end protection and production and so are a supervisor's decision."""

ROLE_ACTIONS: Mapping[Role, frozenset[str]] = {
    Role.VIEWER: frozenset(),
    Role.OPERATOR: OPERATOR_ACTIONS,
    Role.SUPERVISOR: frozenset(ACTIONS),
}
"""Which `controller.operator.protocol.ACTIONS` each role may send (viewer: none)."""


def _role(value: Any) -> Any:
    if isinstance(value, str) and value not in tuple(Role):
        raise ValueError(f"unknown role (allowed: {', '.join(Role)})")
    return value


class Account(OperatorConfig):
    """An operator of the controller who may log in to the dashboard."""

    role: Annotated[Role, BeforeValidator(_role)]
    password_hash: str = Field(description="argon2id hash (`bioreactor dashboard-passwd`)")

    @field_validator("password_hash")
    @classmethod
    def _argon2id(cls, value: str) -> str:
        # The value is never repeated in the message: it may be a password typed in by mistake.
        try:
            parameters = argon2.extract_parameters(value)
        except (argon2.exceptions.InvalidHashError, ValueError):
            raise ValueError("not an argon2id hash (a plain password?): make one with "
                             "`bioreactor dashboard-passwd`") from None
        if parameters.type is not argon2.Type.ID:
            raise ValueError(f"an argon2{parameters.type.name.lower()} hash; argon2id is "
                             "required: make one with `bioreactor dashboard-passwd`")
        return value


def duplicate_names(accounts: list[Account]) -> list[str]:
    """Names that more than one account claims (sorted): which password would log in?"""
    names = [a.name for a in accounts]
    return sorted({n for n in names if names.count(n) > 1})


class AccountsFile(StrictModel):
    """The file `accounts_file` names: only `[[account]]` tables."""

    account: list[Account] = Field(default_factory=list)


class DashboardConfig(StrictModel):
    """The dashboard's own config file."""

    account: list[Account] = Field(default_factory=list)
    accounts_file: str | None = Field(
        default=None, description="a TOML file of more [[account]] tables (relative to this "
        "config); keep it mode 600")
    session_ttl_s: Seconds = Field(default=8 * 3600.0, ge=300, le=7 * 86400,
                                   description="a login lasts at most this long")
    idle_ttl_s: Seconds = Field(default=30 * 60.0, ge=60, le=86400,
                                description="a session unused this long is closed")

    @field_validator("account")
    @classmethod
    def _unique_names(cls, accounts: list[Account]) -> list[Account]:
        repeated = duplicate_names(accounts)
        if repeated:
            raise ValueError(f"names must be unique; repeated: {repeated}")
        return accounts

    @model_validator(mode="after")
    def _idle_within_session(self) -> DashboardConfig:
        if self.idle_ttl_s > self.session_ttl_s:
            raise ValueError(f"idle_ttl_s must not be longer than session_ttl_s "
                             f"({self.session_ttl_s:g} s)")
        return self

    def find(self, name: str) -> Account | None:
        return next((a for a in self.account if a.name == name), None)


class DashboardConfigError(ValueError):
    """A bad dashboard config: the message names the key and what is allowed."""


def load_dashboard_config(path: Path) -> DashboardConfig:
    """Read and validate CONFIG; DashboardConfigError (one line, names the key) when bad.

    `accounts_file` is read relative to CONFIG's folder and its accounts join CONFIG's own;
    a name in both is refused like a name twice in one file. At least one account is required:
    a config that names nobody would lock everyone out (run without CONFIG for a read-only view).
    """
    path = Path(path)
    config = _validated(DashboardConfig, _read_toml(path), str(path))
    accounts = list(config.account)
    if config.accounts_file is not None:
        extra_path = path.parent / config.accounts_file
        extra = _validated(AccountsFile, _read_toml(extra_path), str(extra_path))
        accounts += extra.account
        repeated = duplicate_names(accounts)
        if repeated:
            raise DashboardConfigError(f"{extra_path}: account names repeated from {path}: "
                                       f"{repeated}")
    if not accounts:
        raise DashboardConfigError(f"{path}: account: no [[account]] here or in accounts_file "
                                   "(to serve a read-only view, start without a CONFIG)")
    return config.model_copy(update={"account": accounts})


def may(role: Role, action: str) -> bool:
    """True when `role` may send `action`."""
    return action in ROLE_ACTIONS.get(role, frozenset())


def authenticate(config: DashboardConfig, name: str, password: str) -> Account | None:
    """The account when `password` is its password, else None (unknown name or wrong password).

    An unknown name costs one hash verification as a known one does, so the answer's time does
    not tell which names have accounts. Slow (argon2id): call it off the event loop.
    """
    account = config.find(name)
    ok = verify_password(account.password_hash if account else UNKNOWN_ACCOUNT_HASH, password)
    return account if ok and account is not None else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return parse_toml(read_toml_text(path, "file"), str(path))
    except ConfigError as exc:
        raise DashboardConfigError(str(exc)) from None


def _validated(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DashboardConfigError(validation.format_validation_error(
            exc, source, model, secret=SECRET_KEYS)) from None
