"""Password hashes: argon2id (memory-hard), via argon2-cffi. STUB: interface fixed."""
from __future__ import annotations


def hash_password(password: str) -> str:
    """An argon2id hash string (`$argon2id$...`) for the config."""
    raise NotImplementedError


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False for a wrong password or an unreadable hash."""
    raise NotImplementedError
