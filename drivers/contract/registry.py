"""The lookup of a driver by its device URL's scheme (the URL itself: drivers.contract.urls).

Drivers register under the `bioreactor.drivers` entry-point group, keyed by scheme (`sim`,
`modbus-tcp`, ...), so a third party adds a backend by packaging it, without editing the
controller.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from drivers.contract.driver import Driver
from drivers.contract.errors import DriverNotFoundError

ENTRY_POINT_GROUP = "bioreactor.drivers"


def available_schemes() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def driver_factory(scheme: str) -> Callable[..., Driver]:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not matches:
        known = ", ".join(available_schemes()) or "none installed"
        raise DriverNotFoundError(f"no driver for scheme {scheme!r}; available: {known}")
    try:
        return matches[0].load()
    except ImportError as exc:
        raise DriverNotFoundError(
            f"driver for scheme {scheme!r} ({matches[0].value}) cannot be loaded: {exc}"
        ) from exc

