"""`bioreactor sweep`: many seeded virtual cultures from one sweep file (docs/sweeps.md).

`spec` reads the sweep file, `cases` expands it into validated runs with deterministic ids,
`task` runs one case (the function a process pool or a Dask worker calls), `metrics` turns a
run's summary into table rows, `store` keeps each finished run's record and writes the tables,
`executors` are the local pool and the Dask cluster, `page` the summary plot and HTML page, and
`sweep` ties them together (`run_sweep`).

Nothing is imported here: a worker process unpickling `task.run_case` imports this package
first, and should not pay for matplotlib and pyarrow, which only the sweep's own process uses.
"""
