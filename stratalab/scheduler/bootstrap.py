"""First-start chores: the admin key that ``stratalab server`` prints."""

from __future__ import annotations

from pathlib import Path

from stratalab.errors import AuthInvalid
from stratalab.files import write_private
from stratalab.scheduler.config import CoordinatorConfig
from stratalab.scheduler.keys import KeyManager


def ensure_admin_key(keys: KeyManager, config: CoordinatorConfig, configured: str = "") -> str:
    """The admin key to announce: the configured one, the saved one, or a new one.

    A configured key is registered (by hash) if the store does not know it.
    Otherwise the key saved in ``<data_dir>/admin_key`` is reused while it is
    valid, and a fresh one is created and saved (mode 0600) when it is not.
    """
    if configured:
        try:
            keys.verify(configured)
        except AuthInvalid:
            keys.register(configured, config.owner, scope="admin", name="configured admin key")
        return configured
    path: Path = config.data_dir / "admin_key"
    if path.exists():
        saved = path.read_text().strip()
        try:
            if keys.verify(saved).is_admin:
                return saved
        except AuthInvalid:
            pass
    _, secret = keys.create(config.owner, scope="admin", name="admin key (first start)")
    write_private(path, secret + "\n")
    return secret
