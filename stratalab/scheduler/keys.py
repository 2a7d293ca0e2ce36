"""API keys: minted once, stored as hashes, checked on every script request.

Keys are 256-bit random secrets, so a plain sha256 is the right hash (a slow
password hash buys nothing against a random key and would cost every
request). Verified keys are cached by hash; revoking drops the cache entry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from stratalab.errors import AuthInvalid
from stratalab.ids import new_id
from stratalab.scheduler.db import ApiKey
from stratalab.scheduler.store import Store

#: Every secret starts with this, so leaked keys are easy to grep for.
SECRET_PREFIX = "slk_"
SCOPES = ("user", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner of every object they create."""

    user_id: str
    scope: str  #: "user" or "admin"
    key_id: str | None = None  #: None for Jupyter-authenticated callers

    @property
    def is_admin(self) -> bool:
        """Whether the caller may act on other users' objects and settings."""
        return self.scope == "admin"

    def owner_filter(self) -> str | None:
        """The user id to restrict queries to (None for admins)."""
        return None if self.is_admin else self.user_id

    def may_see(self, owner: str) -> bool:
        """Whether an object owned by ``owner`` exists for this caller (else 404)."""
        return self.is_admin or owner == self.user_id


def hash_secret(secret: str) -> str:
    """sha256 hex of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyManager:
    """Create, list, revoke and verify API keys."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, Principal] = {}

    def create(self, user_id: str, *, scope: str = "user", name: str = "") -> tuple[ApiKey, str]:
        """A new key for ``user_id``; returns the row and the secret (shown once)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        return self.register(secret, user_id, scope=scope, name=name), secret

    def register(self, secret: str, user_id: str, *, scope: str, name: str) -> ApiKey:
        """Store a key whose secret was chosen elsewhere (``--StrataLab.admin_key``)."""
        row = ApiKey(
            id=new_id("key"),
            user_id=user_id,
            name=name,
            key_hash=hash_secret(secret),
            prefix=secret[:10],
            scope=scope,
        )
        return self._store.add_key(row)

    def cached(self, secret: str) -> Principal | None:
        """The principal of an already verified key, without touching the store.

        The request hot path calls this first and goes to the database (off
        the event loop) only for a key it has not seen since start.
        """
        return self._cache.get(hash_secret(secret))

    def verify(self, secret: str) -> Principal:
        """The principal a secret belongs to; :class:`AuthInvalid` if none."""
        key_hash = hash_secret(secret)
        cached = self._cache.get(key_hash)
        if cached is not None:
            return cached
        row = self._store.key_by_hash(key_hash)
        if row is None or row.revoked_at is not None:
            raise AuthInvalid("the API key is unknown or revoked")
        principal = Principal(user_id=row.user_id, scope=row.scope, key_id=row.id)
        self._cache[key_hash] = principal
        return principal

    def revoke(self, key_id: str, *, user_id: str | None = None) -> ApiKey:
        """Revoke a key (a user's own, or any for admins) and forget it."""
        row = self._store.revoke_key(key_id, user_id)
        self._cache.pop(row.key_hash, None)
        return row

    def list(self, *, user_id: str | None = None) -> list[ApiKey]:
        """Keys of one user, or all keys."""
        return self._store.list_keys(user_id)
