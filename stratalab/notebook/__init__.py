"""What runs in a user's kernel or script: the client SDK (HTTP only)."""

from __future__ import annotations

from stratalab.notebook.client import ApiError, Client

__all__ = ["ApiError", "Client"]
