"""The `bioreactor` command line: run, sweep, report, check-config."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

from controller import clock
from controller.cli import dashboard_passwd
from controller.cli.audit import add_audit_parser
from controller.cli.cmd import add_cmd_parser
from controller.cli.console import ProgressLine, SweepProgressLine, summary_table
from controller.cli.dashboard import add_dashboard_parser
from controller.cli.logs import configure_logging
from controller.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    MqttConfig,
    RunConfig,
    fleet,
    format_speed,
    load_config,
    parse_config,
    parse_speed,
    read_toml_text,
    safety_warnings,
)
from controller.runtime.run import (
    Run,
    RunOptions,
    config_devices,
    default_db_path,
    open_reactor_driver,
)
from controller.runtime.writer_child import HistorianError
from controller.sweep.executors import (
    WORKER_WAIT_S,
    DaskCluster,
    Executor,
    LocalPool,
    scheduler_address,
)
from drivers.contract.durations import format_duration, parse_duration_s
from drivers.contract.errors import DeviceError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DeviceError as exc:  # a device that answers but cannot be driven (another map)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except HistorianError as exc:  # the records cannot be written: said, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bioreactor", description="Bioreactor controller with an emulated culture chamber."
    )
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a culture (emulated or on real devices)")
    run.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    run.add_argument("--duration", help="e.g. 14d, 36h, 90m; overrides [run].duration")
    run.add_argument("--speed", help="'max' (virtual time) or a factor; 1 is real time")
    run.add_argument("--seed", type=int, help="overrides [run].seed")
    run.add_argument("--mqtt", help="mqtt[s]://[USER:PASS@]HOST:PORT: publish telemetry and take "
                     "commands there; overrides [mqtt].url")
    run.add_argument("--fault", action="append", default=[], metavar="NAME@TIME[:k=v,...]",
                     help="inject a fault into the emulated chamber (repeatable); "
                     "see docs/faults.md")
    run.add_argument("--device", help="device URL for a single-reactor config, e.g. "
                     "modbus-tcp://127.0.0.1:5020; overrides [[reactor]].device")
    run.add_argument("--reactors", type=int, metavar="N",
                     help="run N copies of a single-reactor config (ids ID-0001...): a fleet")
    run.add_argument("--db", type=Path, help="historian file (default runs/RUN_ID.sqlite)")
    run.add_argument("--run-id", type=_run_id, help="name the run (default: a fresh random id); "
                     "an unfinished run of this id is continued from its checkpoint under "
                     "[run].restart_policy (docs/recovery.md)")
    run.add_argument("--summary-json", type=Path, help="write the run summary here")
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser("report", help="plots and an HTML page from a run's historian")
    report.add_argument("db", type=Path)
    report.add_argument("--out", type=Path, required=True)
    report.set_defaults(func=_cmd_report)

    check = sub.add_parser("check-config", help="validate a config and say what it runs")
    check.add_argument("config", type=Path)
    check.set_defaults(func=_cmd_check_config)

    watch = sub.add_parser("watch", help="live view of reactors publishing on MQTT")
    watch.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL")
    watch.add_argument("--ca-file", help="CA bundle for an mqtts:// broker")
    watch.add_argument("--reactor", metavar="ID", help="only this reactor")
    watch.set_defaults(func=_cmd_watch)

    sweep = sub.add_parser("sweep", help="many virtual cultures from a sweep file (seeds, "
                           "config values, faults), in parallel; docs/sweeps.md")
    sweep.add_argument("sweep", type=Path, metavar="SWEEP.toml")
    sweep.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="results.parquet, results.csv, index.html and runs/ go here; "
                       "re-running into the same DIR runs only the missing runs")
    sweep.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                       metavar="N", help="local worker processes (default: the number of cores)")
    sweep.add_argument("--scheduler", metavar="tcp://HOST:PORT", type=_scheduler_address,
                       help="run on this Dask distributed scheduler's workers instead")
    sweep.add_argument("--worker-wait", type=_worker_wait_s, default=WORKER_WAIT_S,
                       metavar="S", help="with --scheduler: how long the runs wait while the "
                       "scheduler has no worker before they are lost "
                       f"(default {WORKER_WAIT_S:g} s)")
    sweep.add_argument("--quiet", action="store_true", help="no progress line")
    sweep.set_defaults(func=_cmd_sweep)

    add_cmd_parser(sub)
    add_audit_parser(sub)
    add_dashboard_parser(sub)
    dashboard_passwd.add_parser(sub)

    # Subcommands from installed packages (e.g. `emulate` from sim_hardware), by entry point,
    # so the controller never imports a backend.
    for entry in entry_points(group="bioreactor.subcommands"):
        entry.load()(sub)
    return parser


def _run_id(text: str) -> str:
    """A run id names files: letters, digits, '-' and '_' only."""
    if not (0 < len(text) <= 64 and all(c.isalnum() or c in "-_" for c in text)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: 1 to 64 letters, digits, '-' or '_'")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def _worker_wait_s(text: str) -> float:
    try:
        seconds = parse_duration_s(text, "time")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0.0:
        raise argparse.ArgumentTypeError(f"{text}: a time above 0, e.g. 60 or 5m")
    return seconds


def _scheduler_address(text: str) -> str:
    try:
        return scheduler_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def apply_overrides(config: Config, *, duration: str | None, speed: str | None,
                    seed: int | None, device: str | None = None,
                    mqtt: str | None = None, faults: list[str] | None = None) -> Config:
    """Command-line values replace the config's, validated by the same rules."""
    if faults:
        # Strings go to the first reactor's emulator as they are; it parses and validates them.
        config = config.model_copy(update={"fault": [*config.fault, *faults]})
    if mqtt is not None:
        base = config.mqtt.model_dump() if config.mqtt is not None else {}
        try:
            config = config.model_copy(update={"mqtt": MqttConfig.model_validate(
                {**base, "url": mqtt})})
        except ValueError as exc:
            raise ConfigError(f"--mqtt: {exc}") from None
    if device is not None:
        if len(config.reactor) != 1:
            raise ConfigError(f"--device needs a single-reactor config; this one has "
                              f"{len(config.reactor)} reactors (set each [[reactor]].device)")
        reactor = config.reactor[0].model_copy(update={"device": device})
        config = config.model_copy(update={"reactor": [reactor]})
    updates: dict[str, object] = {}
    if duration is not None:
        try:
            updates["duration"] = parse_duration_s(duration)
        except ValueError as exc:
            raise ConfigError(f"--duration: {exc}") from None
    if speed is not None:
        try:
            updates["speed"] = parse_speed(speed)
        except ValueError as exc:
            raise ConfigError(f"--speed: {exc}") from None
    if seed is not None:
        updates["seed"] = seed
    if not updates:
        return config
    try:
        run = RunConfig.model_validate({**config.run.model_dump(), **updates})
    except ValueError as exc:
        raise ConfigError(f"command-line override: {exc}") from None
    return config.model_copy(update={"run": run})


def _cmd_run(args: argparse.Namespace) -> int:
    config_text = read_toml_text(args.config, "config file")  # read once: checked as recorded
    config = parse_config(config_text, source=str(args.config))
    config = apply_overrides(config, duration=args.duration, speed=args.speed, seed=args.seed,
                             device=args.device, mqtt=args.mqtt, faults=args.fault)
    if args.reactors is not None:
        config = fleet(config, args.reactors)
    check_devices(config)  # fail before starting anything
    print_warnings(config)  # the run records them too, as config_warning events
    progress = None if args.quiet else ProgressLine()
    options = RunOptions(config=config, config_text=config_text, db_path=args.db,
                         progress=progress)
    if args.run_id is not None:
        options.run_id = args.run_id
    if progress is not None:  # the id to restart with, should this process die
        print(f"run {options.run_id}: records in {args.db or default_db_path(options.run_id)}",
              file=sys.stderr)
    summary = clock.run(Run(options).execute(), config.run.speed)
    if progress is not None:
        progress.finish()
    print(summary_table(summary))
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0 if summary["stopped_by"] == "completed" else 130


def check_devices(config: Config) -> None:
    """Build every reactor's driver once, unconnected: a bad URL or chamber table is a
    ConfigError before anything starts."""
    for index, device in enumerate(config_devices(config)):
        open_reactor_driver(config, index, lambda: 0.0, device)


def _interrupt_sweep(signum: int, frame: object) -> None:
    """SIGTERM (a service manager, `kill`) stops a sweep as Ctrl-C does: Ctrl-C reaches the
    pool's workers through the terminal's process group, SIGTERM only this process, so it is
    handed on to them as SIGINT (each run in flight stops safely, as `bioreactor run` does on
    Ctrl-C) instead of leaving them running on as orphans."""
    for worker in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGINT)  # type: ignore[arg-type]
    raise KeyboardInterrupt


def _cmd_sweep(args: argparse.Namespace) -> int:
    from controller.sweep.sweep import SweepOptions, run_sweep

    executor: Executor = (LocalPool(args.workers) if args.scheduler is None
                          else DaskCluster(args.scheduler, worker_wait_s=args.worker_wait))
    progress = None if args.quiet else SweepProgressLine()
    options = SweepOptions(args.sweep, args.out, executor,
                           setup=functools.partial(configure_logging, args.log_level),
                           progress=progress)
    signal.signal(signal.SIGTERM, _interrupt_sweep)
    try:
        result = run_sweep(options)
    except OSError as exc:  # the scheduler cannot be reached, DIR cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the runs in flight stop safely; the finished ones are kept
        print(f"\ninterrupted: the finished runs are in {args.out / 'runs'} and the tables; "
              "run the same command again to finish the rest", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.finish()
    print(f"sweep {args.sweep}: {result.total} runs ({result.reused} found finished, "
          f"{result.ran} run now); {result.failed} failed, {result.lost} lost")
    print(f"results: {args.out / 'results.csv'}, {args.out / 'results.parquet'}")
    print(f"summary: {result.page}")
    return 0 if result.failed == 0 and result.lost == 0 else 1


def print_warnings(config: Config) -> None:
    """What the config allows but should not go unsaid (controller/config/safety_check.py)."""
    for _, line in safety_warnings(config):
        print(f"warning: {line}", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    from controller.report import write_report

    index = write_report(args.db, args.out)
    print(f"report: {index}")
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from controller.cli.watch import watch
    from controller.mqtt.link import MqttSettings

    try:
        settings = MqttSettings.from_url(args.mqtt, ca_file=args.ca_file)
    except ValueError as exc:
        print(f"error: --mqtt: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(settings, args.reactor))
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_devices(config)
    run = config.run
    print(f"{args.config}: OK")
    print_warnings(config)
    print(f"  duration {format_duration(run.duration)}, control period "
          f"{run.control_period_s:g} s, seed {run.seed}, speed {format_speed(run.speed)}")
    for reactor in config.reactor:
        loops = ", ".join(f"{n} ({lc.pv} -> {lc.mv}, SP {lc.setpoint:g})"
                          for n, lc in reactor.loops.items())
        recipe = reactor.recipe
        feeds = (f"{len(reactor.schedule.perfusion)} perfusion steps, "
                 f"{len(reactor.schedule.bolus)} boluses" if recipe is None else
                 f"recipe {recipe.name} ({len(recipe.phase)} phases: "
                 f"{', '.join(p.name for p in recipe.phase)})")
        print(f"  reactor {reactor.id} on {reactor.device}: loops {loops or 'none'}; {feeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
