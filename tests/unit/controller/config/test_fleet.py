"""`--reactors N`: N copies of one reactor, each its own id, the faults aimed at each."""
from __future__ import annotations

import pytest

from controller.config import ConfigError, fleet, parse_config
from tests.plugins.configs import load_default


def test_copies_get_numbered_ids_and_keep_everything_else() -> None:
    base = load_default()
    config = fleet(base, 12)
    assert [r.id for r in config.reactor][:2] == [f"{base.reactor[0].id}-0001",
                                                   f"{base.reactor[0].id}-0002"]
    assert len({r.id for r in config.reactor}) == 12
    assert all(r.model_copy(update={"id": base.reactor[0].id}) == base.reactor[0]
               for r in config.reactor)


def test_a_fault_table_applies_to_every_copy_and_a_command_line_fault_to_the_first() -> None:
    base = load_default()
    with_faults = base.model_copy(update={"fault": [{"name": "heater_stuck", "at": "1h"},
                                                     "co2_supply_lost@2h"]})
    config = fleet(with_faults, 3)
    assert [len(config.faults_for(i)) for i in range(3)] == [2, 1, 1]


@pytest.mark.parametrize("count", [0, -1, 10_001])
def test_a_count_out_of_range_names_the_flag_and_the_range(count: int) -> None:
    with pytest.raises(ConfigError, match=r"--reactors = .*between 1 and 10000"):
        fleet(load_default(), count)


def test_a_multi_reactor_config_is_refused() -> None:
    two = parse_config('[[reactor]]\nid = "a"\n[[reactor]]\nid = "b"\n')
    with pytest.raises(ConfigError, match="single-reactor config; this one has 2"):
        fleet(two, 2)
