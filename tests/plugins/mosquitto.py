"""A private Mosquitto broker for tests: loopback only, free port, always stopped.

Registered for every test by `pytest_plugins` in tests/conftest.py: ask for the `broker` fixture
by name (it is a factory:
`b = broker(password=True, tls=True)` returns a started Broker and every broker it made is
stopped after the test, pass or fail).
"""
from __future__ import annotations

import getpass
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plugins.processes import LOOPBACK, free_port
from plugins.waiting import wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USER, PASSWORD = "ctrl", "s3cret-pass"
KEY = "00112233445566778899aabbccddeeff"
"""Operator alice's key in the configs the MQTT tests write, for signed commands."""


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
         "-out", ca_crt, "-days", "2", "-subj", "/CN=bioreactor-test-ca")
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    return {"ca": ca_crt, "cert": crt, "key": key}


class Broker:
    """One mosquitto process with a generated config under `tmp_path`."""

    def __init__(self, tmp_path: Path, *, port: int | None = None, password: bool = False,
                 tls: bool = False, acl: str | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.dir = Path(tmp_path) / f"mosquitto-{id(self):x}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.users = dict(users or {USER: PASSWORD}) if password or users else {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.dir / "mosquitto.log"
        self.tls_files = make_tls_files(self.dir / "tls") if tls else {}
        lines = [
            f"listener {self.port} {LOOPBACK}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.dir / 'data'}/",
            "autosave_interval 1",
            # Test subscribers are slower than a burst; never drop what is queued for them.
            "max_queued_messages 0",
            "max_inflight_messages 100",
            f"log_dest file {self.log_file}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            f"user {getpass.getuser()}",
        ]
        (self.dir / "data").mkdir(exist_ok=True)
        if self.users:
            pw = self.dir / "passwd"
            first = True
            for user, secret in self.users.items():
                _run("mosquitto_passwd", *(["-c"] if first else []), "-b", pw, user, secret)
                first = False
            pw.chmod(0o600)
            lines.append(f"password_file {pw}")
        if acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text(acl)
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if tls:
            lines += [f"cafile {self.tls_files['ca']}", f"certfile {self.tls_files['cert']}",
                      f"keyfile {self.tls_files['key']}", "tls_version tlsv1.2"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        user = next(iter(self.users.items()), None)
        cred = f"{user[0]}:{user[1]}@" if user else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{cred}{LOOPBACK}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        return self.tls_files.get("ca")

    def start(self, timeout_s: float = 10.0) -> Broker:
        """Start and wait until the port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(self._accepting, timeout_s,
                       f"mosquitto to listen on {LOOPBACK}:{self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _accepting(self) -> bool:
        """Whether the port takes a connection; a broker that exited fails with its log."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(
                f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log()}")
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down `down_s`, start again on the same port."""
        self.stop()
        if down_s:
            time.sleep(down_s)  # the outage is the scenario: clients must ride it out
        self.start()

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory fixture: `broker(**kwargs)` -> a started Broker; all are stopped afterwards."""
    made: list[Broker] = []

    def make(**kwargs: object) -> Broker:
        b = Broker(tmp_path, **kwargs)  # type: ignore[arg-type]
        made.append(b)
        return b.start()

    try:
        yield make
    finally:
        for b in made:
            b.stop()


PROBE_TOPIC = "probe/e2e"
"""Published until a new subscriber hears it: then it has subscribed."""


class Subscriber:
    """mosquitto_sub with a persistent session (QoS 1): the broker queues for it across restarts
    of the controller, and it reconnects by itself across restarts of the broker.

    `topics`: one filter or several. `with_topics`: each line is `topic payload` (`-v`), read
    back with `topic_messages()`; otherwise payloads only, read back with `messages()`.
    """

    def __init__(self, b: Broker, topics: str | list[str], out: Path, *,
                 with_topics: bool = False) -> None:
        self.out = out
        filters = [topics] if isinstance(topics, str) else topics
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", LOOPBACK, "-p", str(b.port), "-c", "-i",
             f"e2e-{secrets.token_hex(3)}", "-q", "1", *(["-v"] if with_topics else []),
             *[a for t in [*filters, PROBE_TOPIC] for a in ("-t", t)]],
            stdout=out.open("w"), stderr=subprocess.DEVNULL)

        def probe_arrived() -> bool:
            subprocess.run(["mosquitto_pub", "-h", LOOPBACK, "-p", str(b.port), "-q", "1",
                            "-t", PROBE_TOPIC, "-m", '{"probe": 1}'], check=True)
            time.sleep(0.05)  # the probe's round trip, before looking for it
            return "probe" in out.read_text()

        wait_until(probe_arrived, 30.0, "mosquitto_sub to subscribe")

    def _whole_lines(self) -> list[str]:
        """The lines mosquitto_sub has finished writing: the file is read while it writes, and
        a last line without its newline yet is a message cut short (CI once read one)."""
        text = self.out.read_text()
        return text[:text.rfind("\n") + 1].splitlines()

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self._whole_lines()
                if line and "probe" not in line]

    def topic_messages(self) -> list[tuple[str, dict]]:
        """`(topic, payload)` of each whole line, for a subscriber made `with_topics`."""
        found = []
        for line in self._whole_lines():
            topic, _, payload = line.partition(" ")
            if topic != PROBE_TOPIC and payload.endswith("}"):
                found.append((topic, json.loads(payload)))
        return found

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
