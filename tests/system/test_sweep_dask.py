"""`bioreactor sweep --scheduler` on a real Dask cluster: a `dask scheduler` and a `dask worker`
with two worker processes on loopback, against the same sweep on the local pool."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins.dask_cluster import dask_cluster
from plugins.sweeps import metrics_by_case, read_results, run_sweep_command, write_sweep

AXES = ("seed", "reactor.chamber.microgravity")


@pytest.fixture
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """A scheduler with two single-threaded worker processes, stopped whatever the outcome."""
    with dask_cluster(tmp_path / "dask-cluster", workers=2) as address:
        yield address


def test_a_dask_cluster_gives_the_local_pools_metrics(tmp_path: Path,
                                                      dask_scheduler: str) -> None:
    sweep = write_sweep(tmp_path, 'seed = [1, 2]\n"reactor.chamber.microgravity" = '
                                  '[false, true]\n')
    local = run_sweep_command(sweep, tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    cluster = run_sweep_command(sweep, tmp_path / "dask", "--scheduler", dask_scheduler)
    assert cluster.returncode == 0, cluster.stderr
    assert "4 runs (0 found finished, 4 run now); 0 failed, 0 lost" in cluster.stdout
    local_rows = read_results(tmp_path / "local")
    cluster_rows = read_results(tmp_path / "dask")
    assert [r["run_id"] for r in cluster_rows] == [r["run_id"] for r in local_rows]
    assert metrics_by_case(cluster_rows, AXES) == metrics_by_case(local_rows, AXES)
    assert all(r["status"] == "ok" for r in cluster_rows)
    # The workers wrote each run's historian where the sweep asked.
    assert all((tmp_path / "dask" / "runs" / f"{r['run_id']}.sqlite").exists()
               for r in cluster_rows)
