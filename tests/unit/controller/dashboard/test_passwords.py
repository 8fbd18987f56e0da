"""argon2id hashes: the defaults are memory-hard; verify never raises."""
from __future__ import annotations

import argon2
import pytest
from argon2 import PasswordHasher, Type

from controller.dashboard.passwords import UNKNOWN_ACCOUNT_HASH, hash_password, verify_password

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)


def test_the_default_hash_is_argon2id_and_memory_hard() -> None:
    hashed = hash_password("correct horse")
    parameters = argon2.extract_parameters(hashed)
    assert parameters.type is Type.ID and hashed.startswith("$argon2id$")
    assert parameters.memory_cost >= 64 * 1024 and parameters.time_cost >= 2
    assert verify_password(hashed, "correct horse")
    assert hash_password("correct horse") != hashed  # salted


def test_a_hash_with_other_parameters_verifies_by_its_own() -> None:
    assert verify_password(hash_password("pw", CHEAP), "pw")


@pytest.mark.parametrize("stored", [
    pytest.param(None, id="a-real-hash-of-pw"), "", "pw", "$argon2id$",
    "$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB",
    "$2b$12$abcdefghijklmnopqrstuu5iDn1PYBI9dNtFXVq2yIuHJs1Sy3Mq6",
])
@pytest.mark.parametrize("password", ["wrong", "", "pw\x00", "ü" * 500])
def test_wrong_passwords_and_garbage_hashes_are_false_never_an_error(
        stored: str | None, password: str) -> None:
    # The real hash is made here, not at collection: its salt is random, and xdist's workers
    # must collect the same test ids.
    stored = hash_password("pw", CHEAP) if stored is None else stored
    assert verify_password(stored, password) is False


def test_the_unknown_account_hash_costs_what_a_real_one_does() -> None:
    parameters = argon2.extract_parameters(UNKNOWN_ACCOUNT_HASH)
    assert parameters == argon2.extract_parameters(hash_password("x"))
    assert verify_password(UNKNOWN_ACCOUNT_HASH, "") is False
