"""Secrets: password hashing, opaque tokens and API keys (stored only as hashes)."""

from __future__ import annotations

import hashlib
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

API_KEY_PREFIX = "nb_"
ACCESS_TOKEN_PREFIX = "nat_"  # noqa: S105 - a prefix, not a secret

_hasher = PasswordHash((Argon2Hasher(),))
# Verified against when the account does not exist, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # a corrupt hash is a failed sign-in, not a crash
        return False


def new_secret(prefix: str) -> str:
    """A prefixed secret with 256 bits of entropy (url-safe base64)."""
    return prefix + secrets.token_urlsafe(32)


def new_api_key() -> str:
    return new_secret(API_KEY_PREFIX)


def new_access_token() -> str:
    return new_secret(ACCESS_TOKEN_PREFIX)


def hash_secret(secret: str) -> str:
    """Fast hash for high-entropy secrets (tokens, API keys); looked up by equality."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_hint(secret: str) -> str:
    """Recognisable but useless to an attacker: prefix plus the last four characters."""
    prefix = secret[:6]
    return f"{prefix}…{secret[-4:]}"


def generate_password() -> str:
    return secrets.token_urlsafe(18)
