"""Secrets: API keys (random, stored as SHA-256) and the admin password (stored with argon2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

KEY_PREFIX = "kb-"
_password_hasher = PasswordHasher()


def generate_api_key() -> str:
    """A new key with 256 bits of randomness; shown to its owner once."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys are long random strings, so a fast hash suffices and lets each request look the key up by hash.

    (A slow hash such as argon2 protects guessable passwords; a 256-bit key cannot be guessed, and
    hashing it with argon2 on every request would cost ~50 ms of CPU.)
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown again later to recognise it."""
    return key[: len(KEY_PREFIX) + 6]


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
