"""`bioreactor watch` as an operator runs it: a real Mosquitto holding hostile retained messages,
a real controller publishing, then killed -9 so the broker publishes its will."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.processes import BIN, LOOPBACK
from plugins.waiting import wait_until

REACTOR = "hsc-1"
DEEP = b"[" * 8000 + b"]" * 8000  # the message that made `watch` raise RecursionError


def _retain(port: int, topic: str, payload_file: Path) -> None:
    subprocess.run(["mosquitto_pub", "-h", LOOPBACK, "-p", str(port), "-q", "1", "-r",
                    "-t", topic, "-f", str(payload_file)], check=True, timeout=30)


def _last_frame(out: Path) -> str:
    """The latest complete screen: frames are separated by a blank line when piped."""
    frames = out.read_text(errors="replace").split("\n\n")
    return frames[-2] if len(frames) > 1 else ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_watch_survives_hostile_retained_messages_and_shows_a_killed_controller_lost(
    broker, tmp_path: Path
) -> None:
    b = broker()
    deep, binary = tmp_path / "deep.json", tmp_path / "binary.bin"
    deep.write_bytes(DEEP)
    binary.write_bytes(bytes(range(256)) * 4096)  # 1 MB, invalid UTF-8 throughout
    _retain(b.port, f"bioreactor/{REACTOR}/cmd", deep)  # operator-writable
    _retain(b.port, f"bioreactor/{REACTOR}/events", deep)
    _retain(b.port, "bioreactor/evil/status", deep)
    _retain(b.port, f"bioreactor/{REACTOR}/alarms", binary)
    config = tmp_path / "mqtt.toml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text() + f'\n[mqtt]\nurl = "{b.url}"\n')

    out = tmp_path / "watch.txt"
    with out.open("w") as stdout:
        viewer = subprocess.Popen([BIN / "bioreactor", "watch", "--mqtt", b.url],
                                  stdout=stdout, stderr=subprocess.PIPE, text=True)
    controller = None
    try:
        wait_until(lambda: "ignored messages: too_deep 2, too_large 1" in _last_frame(out), 30,
                   "the view to read and refuse the retained messages")
        controller = subprocess.Popen(
            [BIN / "bioreactor", "run", str(config), "--speed", "20", "--duration", "1d",
             "--quiet", "--db", str(tmp_path / "runs" / "run.sqlite")],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: f"== {REACTOR}  state=running" in _last_frame(out)
                   and "temperature_c" in _last_frame(out), 60, "the live controller in view")
        controller.send_signal(signal.SIGKILL)  # the broker publishes its will
        killed_at = time.monotonic()
        wait_until(lambda: f"== {REACTOR}  state=lost" in _last_frame(out), 30,
                   "the will's `lost` in view")
        shown_after_s = time.monotonic() - killed_at
        # No message arrives any more, yet the screen keeps being redrawn: the age counts up.
        wait_until(lambda: "data age 00:00:03" in _last_frame(out), 30,
                   "a redraw on the timer, 3 s after the last telemetry")
        assert viewer.poll() is None, "watch exited"
    finally:
        if controller is not None:
            _stop(controller)
        viewer.send_signal(signal.SIGINT)  # as an operator stops it: Ctrl-C
        _, err = viewer.communicate(timeout=30)
    print(f"lost shown {shown_after_s:.2f} s after the kill")  # measured, not asserted
    assert viewer.returncode == 0, err
    assert "Traceback" not in err and "Traceback" not in out.read_text(errors="replace")
    frame = _last_frame(out)
    assert "evil" not in frame  # its only message was refused: nothing to show
