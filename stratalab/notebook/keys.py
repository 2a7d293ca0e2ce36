"""``c.keys``: API keys for scripts (admins mint them for anyone, users for themselves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stratalab.notebook.resource import AsyncResource, SyncResource, collect, seg, to_frame
from stratalab.notebook.transport import Request
from stratalab.notebook.types import Key, KeyCreated

if TYPE_CHECKING:
    import pandas as pd


def create_request(user_id: str | None, scope: str, name: str) -> Request:
    """``POST /keys``; no ``user_id`` means a key for the caller."""
    body = {"scope": scope, "name": name}
    if user_id is not None:
        body["user_id"] = user_id
    return Request("POST", "/keys", json=body)


class Keys(SyncResource):
    """API keys: ``c.keys.create("alice")``, ``c.keys.list()``, ``c.keys.revoke(id)``."""

    def create(
        self, user_id: str | None = None, *, scope: str = "user", name: str = ""
    ) -> KeyCreated:
        """A new key; its secret (``key``) is in this answer only, so keep it."""
        key: KeyCreated = self._run(create_request(user_id, scope, name))
        return key

    def records(self) -> list[Key]:
        """Your keys (every key, for admins) as dicts, without secrets."""
        return list(self._run(collect("/keys")))

    def list(self) -> pd.DataFrame:
        """Your keys (every key, for admins) as a DataFrame, without secrets."""
        return to_frame(self.records(), Key)

    def revoke(self, key_id: str) -> None:
        """Revoke a key at once: its next request answers ``AUTH_INVALID``."""
        self._run(Request("DELETE", f"/keys/{seg(key_id)}"))


class AsyncKeys(AsyncResource):
    """The asyncio twin of :class:`Keys`."""

    async def create(
        self, user_id: str | None = None, *, scope: str = "user", name: str = ""
    ) -> KeyCreated:
        """See :meth:`Keys.create`."""
        key: KeyCreated = await self._run(create_request(user_id, scope, name))
        return key

    async def records(self) -> list[Key]:
        """See :meth:`Keys.records`."""
        return list(await self._run(collect("/keys")))

    async def list(self) -> pd.DataFrame:
        """See :meth:`Keys.list`."""
        return to_frame(await self.records(), Key)

    async def revoke(self, key_id: str) -> None:
        """See :meth:`Keys.revoke`."""
        await self._run(Request("DELETE", f"/keys/{seg(key_id)}"))
