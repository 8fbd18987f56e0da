"""`bioreactor dashboard-passwd`: a password from a pipe or typed twice without echo; its
argon2id hash on stdout; an empty one refused."""
from __future__ import annotations

import io
import os
import pty
import select
import subprocess

import pytest
from plugins.processes import BIN

from controller.cli import dashboard_passwd
from controller.cli.main import main
from controller.dashboard.passwords import verify_password


def test_a_piped_password_is_hashed() -> None:
    done = subprocess.run([BIN / "bioreactor", "dashboard-passwd"], input="s3cret pass\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    hashed = done.stdout.strip()
    assert hashed.startswith("$argon2id$") and verify_password(hashed, "s3cret pass")
    assert "s3cret" not in done.stdout + done.stderr


@pytest.mark.parametrize("text", ["", "\n", "\r\n"])
def test_an_empty_password_is_refused(text: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["dashboard-passwd"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: empty password refused\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_at_a_terminal_it_asks_twice_without_echo(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter(["pw one", "pw one", "pw two", "pw 2"])
    prompts: list[str] = []
    monkeypatch.setattr(dashboard_passwd.getpass, "getpass",
                        lambda prompt: prompts.append(prompt) or next(typed))
    assert dashboard_passwd.run(None, Tty()) == 0  # type: ignore[arg-type]
    assert verify_password(capsys.readouterr().out.strip(), "pw one")
    assert prompts == ["Password: ", "Again: "]
    assert dashboard_passwd.run(None, Tty()) == 2  # type: ignore[arg-type]
    assert capsys.readouterr().err == "error: the passwords differ\n"


def _read_until(fd: int, marker: bytes, timeout_s: float = 60.0) -> bytes:
    """What the terminal shows up to `marker` (select: never a fixed sleep)."""
    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            raise AssertionError(f"no {marker!r} on the terminal; saw {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_on_a_real_terminal_the_password_is_not_echoed() -> None:
    """The command in a pseudo-terminal of its own, as a user at a shell runs it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling tty
        try:
            os.execv(str(BIN / "bioreactor"), [str(BIN / "bioreactor"), "dashboard-passwd"])
        finally:
            os._exit(127)  # never back into pytest in the child
    try:
        shown = _read_until(fd, b"Password: ")
        os.write(fd, b"typed secret\n")
        shown += _read_until(fd, b"Again: ")
        os.write(fd, b"typed secret\n")
        shown += _read_until(fd, b"$argon2id$")
        shown += _read_until(fd, b"\n", 60.0)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, shown
    assert b"typed secret" not in shown  # no echo
    hashed = shown[shown.index(b"$argon2id$"):].split()[0].decode()
    assert verify_password(hashed, "typed secret")
