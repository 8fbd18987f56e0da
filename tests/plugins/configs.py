"""The repository's default config, variations of it, and runs of it in virtual time."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller import clock
from controller.cli.main import apply_overrides
from controller.config import Config, load_config, parse_config
from controller.runtime.run import Run, RunOptions

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO / "configs" / "hsc_expansion.toml"
# The pre-recipe default, feeding by [[reactor.schedule.perfusion]] and [[reactor.schedule.bolus]]
# tables: the schedule is still a supported way to feed (hil configs use it), and its tests
# need a full culture config that uses it.
TIMETABLE_CONFIG_PATH = REPO / "tests" / "data" / "hsc_timetable.toml"


@pytest.fixture
def default_config_text() -> str:
    return DEFAULT_CONFIG_PATH.read_text()


def run_config(config: Config, db_path: Path, *, duration: str | None = None,
               seed: int | None = None) -> dict:
    """Run `config` in virtual time and return its summary."""
    config = apply_overrides(config, duration=duration, speed="max", seed=seed)
    options = RunOptions(config=config, config_text="", db_path=db_path)
    return clock.run(Run(options).execute(), None)


def run_default_with_fault(fault: str | None, db_path: Path, duration: str) -> dict:
    """The default config with `fault` (or none) for `duration`; module-level and with
    picklable arguments so a spawned worker process can run it."""
    config = apply_overrides(load_config(DEFAULT_CONFIG_PATH), duration=None, speed=None,
                             seed=None, faults=[fault] if fault else None)
    return run_config(config, db_path, duration=duration)


def load_default(**edits: str) -> Config:
    """The default config with text substitutions `old=new` applied, for variations."""
    return load_edited(DEFAULT_CONFIG_PATH, **edits)


def load_timetable(**edits: str) -> Config:
    """The schedule-fed timetable config with text substitutions `old=new` applied, for
    variations that test the schedule tables."""
    return load_edited(TIMETABLE_CONFIG_PATH, **edits)


def load_edited(path: Path, **edits: str) -> Config:
    """The config at `path` with text substitutions `old=new` applied; each `old` must occur."""
    text = path.read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(text)
