"""What the executors do without running a culture: nothing to run, an unreachable cluster."""
from __future__ import annotations

import pytest
from plugins.processes import LOOPBACK, free_port

from controller.sweep.executors import DaskCluster, LocalPool, lost


def test_nothing_to_run_starts_no_pool_and_no_client() -> None:
    assert list(LocalPool(2).run([], None)) == []
    assert list(DaskCluster("tcp://192.0.2.1:1").run([], None)) == []  # never connected


def test_an_unreachable_scheduler_is_an_oserror_naming_it() -> None:
    address = f"tcp://{LOOPBACK}:{free_port()}"
    with pytest.raises(OSError, match=address):  # the CLI prints it as one line, exit 1
        list(DaskCluster(address, connect_timeout_s=0.5).run([{"run_id": "x"}], None))


def test_a_lost_run_says_why() -> None:
    record = lost({"run_id": "abc", "case": {"seed": 1}}, RuntimeError("worker died"))
    assert record == {"run_id": "abc", "case": {"seed": 1}, "status": "lost",
                      "error": "worker lost: RuntimeError: worker died", "reactors": [],
                      "wall_seconds": None}
