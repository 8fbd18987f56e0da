"""A controller run as a user starts it: `bioreactor run CONFIG --mqtt ...` in its own process,
with a config that names the broker and the operators whose signed commands it takes."""
from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.mosquitto import KEY
from plugins.processes import BIN


def write_config(tmp_path: Path, broker_url: str, *, period_s: float = 5.0,
                 max_skew_s: float = 30.0,
                 operators: Mapping[str, str] | None = None) -> Path:
    """The default config with `[mqtt]` on `broker_url` and one `[[operator]]` per
    `operators` entry (name -> key hex; alice with the plugins' KEY by default)."""
    text = DEFAULT_CONFIG_PATH.read_text().replace(
        "control_period_s = 1.0", f"control_period_s = {period_s}")
    text += (f'\n[mqtt]\nurl = "{broker_url}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
             f'max_skew_s = {max_skew_s}\n')
    for name, key_hex in (operators or {"alice": KEY}).items():
        text += f'\n[[operator]]\nname = "{name}"\nkey_hex = "{key_hex}"\n'
    path = tmp_path / "mqtt.toml"
    path.write_text(text)
    return path


def start_run(config: Path, tmp_path: Path, *, speed: str, duration: str,
              db: Path | None = None, cwd: Path | None = None,
              options: tuple[str, ...] = ()) -> subprocess.Popen:
    """`bioreactor run` as a user types it; `options` such as ("--mqtt", URL, "--run-id", ID)."""
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(config), "--speed", speed, "--duration", duration,
         "--quiet", "--db", str(db or tmp_path / "run.sqlite"),
         "--summary-json", str(tmp_path / "summary.json"), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
