"""Password hashes: argon2id (memory-hard), via argon2-cffi.

Why argon2id: the config (or its accounts file) holding the hashes may leak with a backup or a
copied laptop; a memory-hard hash makes each guess cost 64 MiB and tens of milliseconds, so
guessing on GPUs is slow where a fast hash (SHA-256, even salted) would fall in hours. argon2id
is the variant RFC 9106 recommends (resistant to both side channels and trade-off attacks).
argon2-cffi's default parameters are RFC 9106's second recommended profile (m=64 MiB, t=3,
p=4). A verify costs that much too: a server should run it off its event loop.
"""
from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

UNKNOWN_ACCOUNT_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$tP1ELvg8o/l/lqkaxCLvpA$"
    "WNfGrbRz7SgiILTpki3tlKqneeOQZHYJNeG36KvNkts"
)
"""A hash of a random, forgotten password, with the default parameters: a login for a name that
has no account is verified against it, so it takes as long as a wrong password for a real one
and the time does not tell which names exist."""


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's (memory-hard) defaults: what the config's hashes use."""
    return PasswordHasher(type=Type.ID)


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """An argon2id hash string (`$argon2id$...`) for the config.

    `hasher`: only tests pass one (cheap parameters); users get the defaults.
    """
    return (hasher or default_hasher()).hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False for a wrong password or an unreadable hash.

    The parameters are read from the hash itself, so a hash made with other parameters
    verifies too.
    """
    try:
        return default_hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False
