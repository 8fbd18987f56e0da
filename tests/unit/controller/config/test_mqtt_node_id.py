"""Names that go into topics: a reactor id and a node id may not start with `_`, the segment
that holds the nodes' own topics (`bioreactor/_node/<node>/status`)."""
from __future__ import annotations

import pytest

from controller.config import ConfigError, parse_config
from tests.plugins.configs import DEFAULT_CONFIG_PATH


def config_with(mqtt: str, reactor_id: str = "hsc-1") -> str:
    text = DEFAULT_CONFIG_PATH.read_text().replace('id = "hsc-1"', f'id = "{reactor_id}"', 1)
    return text + f'\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n{mqtt}\n'


def test_a_node_id_and_a_client_id_that_names_the_node_are_accepted() -> None:
    assert parse_config(config_with('node_id = "lab-a.2"')).mqtt.node_id == "lab-a.2"
    assert parse_config(config_with('client_id = "ctrl-1"')).mqtt.client_id == "ctrl-1"
    assert parse_config(config_with('client_id = "a/b"\nnode_id = "ab"')).mqtt.node_id == "ab"


@pytest.mark.parametrize(("mqtt", "reactor_id", "named"), [
    ('node_id = "_node"', "hsc-1", r"mqtt\.node_id = '_node'"),
    ('client_id = "a/b"', "hsc-1", r"client_id.*'a/b' is also the node id.*set node_id"),
    ("", "_node", r"reactor\[0\]\.id = '_node'"),
])
def test_a_name_that_could_take_the_nodes_topics_is_refused(mqtt: str, reactor_id: str,
                                                          named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(config_with(mqtt, reactor_id))
