"""The dashboard config: accounts, roles, hashes, durations; errors that name the key and never
print a secret."""
from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type

from controller.dashboard.accounts import (
    OPERATOR_ACTIONS,
    ROLE_ACTIONS,
    DashboardConfigError,
    Role,
    authenticate,
    load_dashboard_config,
    may,
)
from controller.dashboard.passwords import hash_password
from controller.operator.protocol import ACTIONS

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
"""Cheap parameters for tests only (the config's hashes use the memory-hard defaults)."""
KEY = "00112233445566778899aabbccddeeff"
HASH = hash_password("correct horse", CHEAP)


def account(name: str, role: str = "operator", password_hash: str = HASH,
            key: str = f'key_hex = "{KEY}"') -> str:
    return (f'[[account]]\nname = "{name}"\n{key}\nrole = "{role}"\n'
            f'password_hash = "{password_hash}"\n')


def write(tmp_path: Path, text: str, name: str = "dashboard.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(DashboardConfigError) as info:
        load_dashboard_config(path)
    return str(info.value)


def test_a_config_with_accounts_here_and_in_an_accounts_file(tmp_path: Path) -> None:
    key_file = tmp_path / "bob.key"
    key_file.write_text("ff" * 16 + "\n")
    (tmp_path / "secret").mkdir()
    write(tmp_path / "secret", account("bob", "supervisor", key=f'key_file = "{key_file}"'),
          "accounts.toml")
    path = write(tmp_path, 'accounts_file = "secret/accounts.toml"\nsession_ttl_s = "12h"\n'
                 'idle_ttl_s = "15m"\n' + account("alice"))
    config = load_dashboard_config(path)
    assert [a.name for a in config.account] == ["alice", "bob"]
    assert config.session_ttl_s == 12 * 3600 and config.idle_ttl_s == 15 * 60
    bob = config.find("bob")
    assert bob is not None and bob.role is Role.SUPERVISOR and bob.key() == b"\xff" * 16
    assert config.find("alice").key() == bytes.fromhex(KEY)  # type: ignore[union-attr]
    assert config.find("mallory") is None


def test_defaults_are_eight_hours_and_thirty_minutes(tmp_path: Path) -> None:
    config = load_dashboard_config(write(tmp_path, account("alice")))
    assert (config.session_ttl_s, config.idle_ttl_s) == (8 * 3600, 30 * 60)


def test_an_unknown_role_names_the_key_and_the_roles(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, account("alice") + account("bob", "admin")))
    assert "account[1].role = 'admin': unknown role (allowed: viewer, operator, supervisor)" \
        in message


def test_a_plain_password_is_refused_and_not_repeated(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, account("alice", password_hash="hunter2-secret")))
    assert "account[0].password_hash: not an argon2id hash" in message
    assert "bioreactor dashboard-passwd" in message
    assert "hunter2" not in message


def test_an_argon2i_hash_is_refused(tmp_path: Path) -> None:
    argon2i = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash("x")
    message = refusal(write(tmp_path, account("alice", password_hash=argon2i)))
    assert "account[0].password_hash: an argon2i hash; argon2id is required" in message
    assert argon2i not in message


def test_a_bad_key_is_refused_without_printing_it(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, account("alice", key='key_hex = "abcdef0123"')))
    assert "account[0].key_hex" in message and "abcdef0123" not in message
    both = refusal(write(tmp_path, account("alice", key=f'key_hex = "{KEY}"\n'
                                                         f'key_file = "x.key"')))
    assert "give exactly one" in both and KEY not in both


@pytest.mark.parametrize("text, expected", [
    ('session_ttl_s = "1s"\n', "session_ttl_s = 1.0: Input should be greater than or equal "
                               "to 300 (allowed: 300 <= value <= 604800)"),
    ('idle_ttl_s = "2d"\n', "idle_ttl_s = 172800.0: Input should be less than or equal to 86400"),
    ('session_ttl_s = "1h"\nidle_ttl_s = "2h"\n', "idle_ttl_s = '2h': must not be longer "
                                                  "than session_ttl_s (3600 s)"),
    ('session_ttl_s = "soon"\n', "session_ttl_s = 'soon'"),
    ('sesion_ttl_s = "1h"\n', "sesion_ttl_s: unknown key (allowed here: account, "
                              "accounts_file, session_ttl_s, idle_ttl_s)"),
])
def test_bad_durations_and_keys_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, text + account("alice")))


def test_duplicate_names_are_refused_in_one_file_and_across_files(tmp_path: Path) -> None:
    assert "account: names must be unique; repeated: ['alice']" in refusal(
        write(tmp_path, account("alice") + account("alice", "viewer")))
    write(tmp_path, account("alice", "viewer"), "more.toml")
    message = refusal(write(tmp_path, 'accounts_file = "more.toml"\n' + account("alice")))
    assert "more.toml: account names repeated from" in message and "['alice']" in message


def test_no_account_anywhere_is_refused(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, 'session_ttl_s = "8h"\n'))
    assert "account: no [[account]]" in message and "without a CONFIG" in message


@pytest.mark.parametrize("data, expected", [
    (None, "no such file"),
    (b"[[account]\n", "not valid TOML"),
    ("# caf\u00e9\n".encode("latin-1"), "not UTF-8 text, as a TOML file must be: byte 0xe9 on "
                                       "line 1; save it as UTF-8"),
])
def test_unreadable_files(tmp_path: Path, data: bytes | None, expected: str) -> None:
    path = tmp_path / "dashboard.toml"
    if data is not None:
        path.write_bytes(data)
    assert expected in refusal(path)


def test_a_missing_accounts_file_names_it(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, 'accounts_file = "gone.toml"\n' + account("alice")))
    assert str(tmp_path / "gone.toml") in message and "no such file" in message


def test_the_accounts_file_holds_only_accounts(tmp_path: Path) -> None:
    write(tmp_path, 'session_ttl_s = "1h"\n' + account("bob"), "more.toml")
    message = refusal(write(tmp_path, 'accounts_file = "more.toml"\n' + account("alice")))
    assert "session_ttl_s: unknown key (allowed here: account)" in message


def test_roles() -> None:
    assert ROLE_ACTIONS[Role.VIEWER] == frozenset()
    assert set(ACTIONS) > OPERATOR_ACTIONS and ROLE_ACTIONS[Role.SUPERVISOR] == set(ACTIONS)
    assert not any(may(Role.VIEWER, action) for action in ACTIONS)
    for action in ("ack_alarm", "shelve_alarm", "set_setpoint", "bolus", "hold", "confirm"):
        assert may(Role.OPERATOR, action)
    for action in ("set_mode", "set_output", "reset_interlock", "remove_alarm_from_service",
                   "start", "stop", "abort"):
        assert not may(Role.OPERATOR, action) and may(Role.SUPERVISOR, action)
    assert not may(Role.SUPERVISOR, "format_disk")


def test_authenticate(tmp_path: Path) -> None:
    config = load_dashboard_config(write(tmp_path, account("alice")))
    found = authenticate(config, "alice", "correct horse")
    assert found is not None and found.name == "alice"
    assert authenticate(config, "alice", "wrong horse") is None
    assert authenticate(config, "alice", "") is None
    assert authenticate(config, "mallory", "correct horse") is None
