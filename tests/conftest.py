"""Shared fixtures: the default config, and runs of it shortened for the suite."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller import clock
from controller.cli.main import apply_overrides
from controller.config import Config, load_config, parse_config
from controller.runtime.run import Run, RunOptions

# The Mosquitto `broker` fixture, for every test module that asks for it by name.
pytest_plugins = ("mosquitto",)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO / "configs" / "hsc_expansion.toml"


@pytest.fixture
def default_config_text() -> str:
    return DEFAULT_CONFIG_PATH.read_text()


def run_config(config: Config, db_path: Path, *, duration: str | None = None,
               seed: int | None = None) -> dict:
    """Run `config` in virtual time and return its summary."""
    config = apply_overrides(config, duration=duration, speed="max", seed=seed)
    options = RunOptions(config=config, config_text="", db_path=db_path)
    return clock.run(Run(options).execute(), None)


def load_default(**edits: str) -> Config:
    """The default config with text substitutions `old=new` applied, for variations."""
    text = DEFAULT_CONFIG_PATH.read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(text)


__all__ = ["DEFAULT_CONFIG_PATH", "REPO", "load_config", "load_default", "run_config"]
