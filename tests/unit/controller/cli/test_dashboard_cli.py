"""`bioreactor dashboard`'s usage errors: one line naming the option, exit 2, nothing started."""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.processes import LOOPBACK, free_port

from controller.cli.main import main


@pytest.mark.parametrize(("args", "message"), [
    (["--mqtt", "http://x"], "error: --mqtt: MQTT URL scheme 'http' is not mqtt or mqtts"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--http", "host:99999"], "error: --http: "),
    (["--mqtt", "mqtt://127.0.0.1:1", "--runs", "/no/such/folder"],
     "error: --runs /no/such/folder: no such folder"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--tls-cert", "cert.pem"],
     "error: --tls-cert and --tls-key go together"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--max-reactors", "0"],
     "error: --max-reactors 0: must be between 1 and 10000"),
    (["--mqtt", "mqtt://127.0.0.1:1", "/no/such/accounts.toml"],
     "error: /no/such/accounts.toml: no such file"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_tls_files_that_cannot_be_loaded_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "not.pem"
    bad.write_text("not a certificate")
    assert main(["dashboard", "--mqtt", "mqtt://127.0.0.1:1",
                 "--http", f"{LOOPBACK}:{free_port()}",
                 "--tls-cert", str(bad), "--tls-key", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --")
    assert "dashboard: https://" not in captured.out  # nothing announced that never served


def test_accounts_over_plain_http_off_loopback_are_refused_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A login form on 0.0.0.0 without TLS would take passwords in clear from the network."""
    from plugins.dashboard import ALICE, write_dashboard_config

    config = write_dashboard_config(tmp_path / "dashboard.toml", [ALICE])
    assert main(["dashboard", "--mqtt", "mqtt://127.0.0.1:1", "--http", "0.0.0.0:8080",
                 str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --http 0.0.0.0:8080: with accounts, plain HTTP off "
                          "loopback would send passwords") and err.count("\n") == 1, err
