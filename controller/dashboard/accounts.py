"""Who may use the dashboard, in which role, and which operator actions each role may take.

STUB (interface fixed; implementation lands with the auth-core work): the dashboard config is a
TOML file (`bioreactor dashboard ... CONFIG`) with `[[account]]` tables; each account is an
`[[operator]]` of the controller (same `name`, and the same `key_hex`/`key_file`: the dashboard
signs that operator's commands with it) plus a `role` and an argon2id `password_hash`.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import Field

from controller.config.remote import OperatorConfig
from drivers.contract.validation import Seconds, StrictModel


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"


ROLE_ACTIONS: Mapping[Role, frozenset[str]] = {}
"""Which `controller.operator.protocol.ACTIONS` each role may send (viewer: none)."""


class Account(OperatorConfig):
    """An operator of the controller who may log in to the dashboard."""

    role: Role
    password_hash: str = Field(description="argon2id hash (`bioreactor dashboard-passwd`)")


class DashboardConfig(StrictModel):
    """The dashboard's own config file."""

    account: list[Account] = Field(default_factory=list)
    session_ttl_s: Seconds = Field(default=8 * 3600.0)
    idle_ttl_s: Seconds = Field(default=30 * 60.0)

    def find(self, name: str) -> Account | None:
        raise NotImplementedError


class DashboardConfigError(ValueError):
    """A bad dashboard config: the message names the key and what is allowed."""


def load_dashboard_config(path: Path) -> DashboardConfig:
    """Read and validate CONFIG; DashboardConfigError (one line, names the key) when bad."""
    raise NotImplementedError


def may(role: Role, action: str) -> bool:
    """True when `role` may send `action`."""
    raise NotImplementedError
