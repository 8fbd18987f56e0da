"""A fleet from one reactor: N copies of a single-reactor config, for load tests and benchmarks
of a daemon that runs many reactors (`bioreactor run --reactors N`)."""
from __future__ import annotations

from typing import Any

from controller.config.loading import Config, ConfigError

MAX_REACTORS = 10_000
"""Far above what one 2-core host keeps up with at 1 Hz (docs/benchmarks.md), so the bound only
refuses typing mistakes (an extra zero or two)."""


def fleet(config: Config, reactors: int) -> Config:
    """`reactors` copies of the config's one reactor, ids `<id>-0001`, `<id>-0002`, ...

    Each copy gets its own random streams (the run seeds reactor k by k, as for any
    multi-reactor config) and its own records. A `[[fault]]` aimed at the reactor applies to
    every copy; a `--fault` from the command line stays with the first reactor, as always.
    """
    if not 1 <= reactors <= MAX_REACTORS:
        raise ConfigError(f"--reactors = {reactors}: must be between 1 and {MAX_REACTORS}")
    if len(config.reactor) != 1:
        raise ConfigError(f"--reactors needs a single-reactor config; this one has "
                          f"{len(config.reactor)} reactors")
    base = config.reactor[0]
    width = max(4, len(str(reactors)))
    ids = [f"{base.id}-{k:0{width}d}" for k in range(1, reactors + 1)]
    if len(ids[-1]) > 64:
        raise ConfigError(f"--reactors: reactor id {ids[-1]!r} would be longer than 64 "
                          "characters; shorten reactor.id")
    copies = [base.model_copy(update={"id": reactor_id}) for reactor_id in ids]
    faults: list[dict[str, Any] | str] = []
    for entry in config.fault:
        if isinstance(entry, dict):
            faults.extend({**entry, "reactor": reactor_id} for reactor_id in ids)
        else:
            faults.append(entry)
    return config.model_copy(update={"reactor": copies, "fault": faults})
