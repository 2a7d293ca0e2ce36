"""Routes for API keys: admins mint keys for users; users manage their own."""

from __future__ import annotations

from tornado import web

from stratalab.errors import Forbidden
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.scheduler.schemas import KeyCreate
from stratalab.scheduler.views import key_out


class KeysHandler(ApiHandler):
    """``/keys``."""

    async def get(self) -> None:
        """The caller's keys (every key for admins); secrets are never listed."""
        c, p = self.coordinator, self.principal()
        rows = await c.db(c.keys.list, user_id=p.owner_filter())
        self.reply(
            {"items": [key_out(k) for k in rows], "total": len(rows), "next_page_token": None}
        )

    async def post(self) -> None:
        """Create a key; the secret is in this answer only."""
        c, p = self.coordinator, self.principal()
        req = self.body(KeyCreate, optional=True)
        user = req.user_id or p.user_id
        if not p.is_admin and (user != p.user_id or req.scope != "user"):
            raise Forbidden("only admins create keys for other users or admin keys")
        row, secret = await c.db(c.keys.create, user, scope=req.scope, name=req.name)
        self.reply({**key_out(row), "key": secret}, 201, location=f"{self.request.path}/{row.id}")


class KeyHandler(ApiHandler):
    """``/keys/{id}``."""

    async def delete(self, key_id: str) -> None:
        """Revoke a key (your own, or any for admins)."""
        c, p = self.coordinator, self.principal()
        await c.db(c.keys.revoke, key_id, user_id=p.owner_filter())
        self.set_status(204)
        self.finish()


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The key routes under ``prefix``."""
    return [
        (f"{prefix}/keys", KeysHandler),
        (f"{prefix}/keys/(?P<key_id>[A-Za-z0-9_-]{{1,64}})", KeyHandler),
    ]
