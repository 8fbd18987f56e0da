"""`bioreactor dashboard` in its own process, as a user starts it, for the browser tests and
the screenshot script: a free loopback port, ready when it answers HTTP, always stopped."""
from __future__ import annotations

import re
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.dashboard.passwords import hash_password
from plugins.controller_runs import start_run, write_config
from plugins.mosquitto import KEY, Broker
from plugins.processes import BIN, LOOPBACK, free_port
from plugins.waiting import wait_until


@dataclass(frozen=True)
class Login:
    """One dashboard account: the controller operator `name` with `key_hex`, in `role`."""

    name: str
    key_hex: str
    role: str
    password: str


ALICE = Login("alice", KEY, "operator", "alice-correct-horse")
VIC = Login("vic", "ffeeddccbbaa99887766554433221100", "viewer", "vic-battery-staple")
REACTOR = "hsc-1"
FAULT = "sensor_dropout@2m:channel=ph"
"""The pH probe drops out 2 simulated minutes in: alarm `ph_bad_quality` (high) 10 s later,
standing for the rest of the run (the temperature stays live)."""
FAULT_ALARM = "ph_bad_quality"


def post_login(client: Any, name: str, password: str) -> Any:
    """Log in as the login page does: GET /login (its CSRF token, as cookie and form field),
    then post the form. `client` is an httpx.Client or Starlette's TestClient."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, f"no CSRF token on the login page ({page.status_code})"
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token.group(1)})


def write_dashboard_config(path: Path, logins: list[Login]) -> Path:
    """The dashboard's CONFIG: one `[[account]]` per login, its password hashed (argon2id)."""
    path.write_text("".join(
        f'[[account]]\nname = "{login.name}"\nkey_hex = "{login.key_hex}"\n'
        f'role = "{login.role}"\npassword_hash = "{hash_password(login.password)}"\n\n'
        for login in logins))
    return path


def operators(logins: list[Login]) -> Mapping[str, str]:
    """The logins as the controller's `[[operator]]` entries (name -> key hex)."""
    return {login.name: login.key_hex for login in logins}


class Dashboard:
    """One `bioreactor dashboard --mqtt URL --http 127.0.0.1:PORT [--runs DIR] [CONFIG]`."""

    def __init__(self, mqtt_url: str, workdir: Path, *, config: Path | None = None,
                 runs: Path | None = None, tls: Mapping[str, Path] | None = None) -> None:
        """`tls`: make_tls_files()'s paths (plugins/mosquitto.py): served over HTTPS."""
        self.port = free_port()
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"dashboard-{self.port}.stderr"
        self.args = [str(BIN / "bioreactor"), "dashboard", "--mqtt", mqtt_url,
                     "--http", f"{LOOPBACK}:{self.port}",
                     *(["--runs", str(runs)] if runs else []),
                     *(["--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
                       if tls else []),
                     *([str(config)] if config else [])]
        # The page every visitor may load: a dashboard with accounts sends others to it.
        self.ready_path = "/login" if config else "/"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Dashboard:
        """Start and wait until it serves its first page with 200."""
        with self.stderr_path.open("wb") as err:  # a file, not a pipe: a pipe nobody reads fills
            self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(self._serving, timeout_s, f"the dashboard to serve {self.ready_path}",
                       poll_s=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"bioreactor dashboard exited with {self.proc.returncode}: "
                               f"{self.stderr()}")
        context = ssl.create_default_context(cafile=str(self.tls["ca"])) if self.tls else None
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2,
                                        context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGINT (as Ctrl-C), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""


@contextmanager
def running_dashboard(mqtt_url: str, workdir: Path, *, config: Path | None = None,
                      runs: Path | None = None,
                      tls: Mapping[str, Path] | None = None) -> Iterator[Dashboard]:
    """A started dashboard, stopped afterwards whatever happened; when the body ended well,
    its stderr must hold no traceback."""
    dashboard = Dashboard(mqtt_url, workdir, config=config, runs=runs, tls=tls)
    dashboard.start()
    try:
        yield dashboard
    finally:
        dashboard.stop()
    assert "Traceback" not in dashboard.stderr(), dashboard.stderr()


@dataclass(frozen=True)
class Stack:
    """A broker, a controller run publishing to it, and two dashboards watching it."""

    broker: Broker
    db: Path
    """The run's historian file (its audit trail), in the dashboards' --runs folder."""
    open_dashboard: Dashboard
    """No CONFIG: read-only, anyone may look."""
    dashboard: Dashboard
    """With ALICE (operator) and VIC (viewer) accounts."""


@contextmanager
def running_stack(tmp: Path, *, speed: str = "60", duration: str = "2d",
                  fault: str = FAULT) -> Iterator[Stack]:
    """Mosquitto, `bioreactor run --speed SPEED` (the default config, `[[operator]]` alice and
    vic, `fault` injected) and two `bioreactor dashboard`s; all stopped afterwards, the
    controller by SIGINT as Ctrl-C. When the body ended well, the controller printed no
    traceback."""
    broker = Broker(tmp).start()
    try:
        runs = tmp / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        config = write_config(tmp, broker.url, operators=operators([ALICE, VIC]))
        accounts = write_dashboard_config(tmp / "dashboard.toml", [ALICE, VIC])
        # The dashboards first: alarms are not retained on the broker, so a dashboard started
        # after the fault's alarm would not know of it.
        with running_dashboard(broker.url, tmp, runs=runs) as open_dashboard, \
                running_dashboard(broker.url, tmp, config=accounts, runs=runs) as dashboard:
            db = runs / "dashboard.sqlite"
            run = start_run(config, tmp, speed=speed, duration=duration, db=db,
                            options=("--run-id", "dashboard", "--fault", fault))
            try:
                yield Stack(broker, db, open_dashboard, dashboard)
            finally:
                err = _stop_run(run)
            assert "Traceback" not in err, err
    finally:
        broker.stop()


def _stop_run(run: subprocess.Popen) -> str:
    """SIGINT, SIGKILL if it hangs; its stderr."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
    try:
        _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        _, err = run.communicate()
    return err
