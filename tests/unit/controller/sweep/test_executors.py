"""What the executors do without running a culture: nothing to run, an unreachable cluster, a
scheduler's address as typed."""
from __future__ import annotations

import pytest
from plugins.processes import LOOPBACK, free_port

from controller.sweep.executors import DaskCluster, LocalPool, lost, scheduler_address


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


@pytest.mark.parametrize(("typed", "address"), [
    ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("TCP://sched.lab:8786", "tcp://sched.lab:8786"),
    ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),  # Dask's own default scheme
    ("tcp://[::1]:8786", "tcp://[::1]:8786"),
    ("[::1]:8786", "tcp://[::1]:8786"),
])
def test_a_scheduler_address_is_taken_as_dask_takes_it(typed: str, address: str) -> None:
    assert scheduler_address(typed) == address


@pytest.mark.parametrize(("typed", "message"), [
    # Each of these was a traceback from deep in distributed.Client's start.
    ("foo", "expected HOST:PORT (PORT 1-65535), got 'foo': missing :PORT"),
    ("tcp://127.0.0.1", "expected HOST:PORT (PORT 1-65535), got '127.0.0.1': missing :PORT"),
    ("", "expected HOST:PORT (PORT 1-65535), got '': missing :PORT"),
    ("tcp://[::1", "unbalanced brackets"),
    ("tcp://h:99999", "port '99999' is not an integer 1-65535"),
    ("http://127.0.0.1:8786", "only tcp://HOST:PORT is supported (a `dask scheduler`'s "
                              "address), not http://"),
    ("tls://127.0.0.1:8786", "not tls://"),  # needs security settings this takes none of
    ("ucx://127.0.0.1:1", "not ucx://"),
    ("inproc://x", "not inproc://"),
])
def test_a_bad_scheduler_address_says_what_is_expected(typed: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        scheduler_address(typed)
    assert message in str(err.value)
