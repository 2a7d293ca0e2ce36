"""WebSocket helpers for the API tests: tornado's client, and a raw socket that reads late."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from tornado.websocket import WebSocketClientConnection

API = ("stratalab", "api", "v1")
Message = dict[str, Any]


async def ws_connect(
    jp_ws_fetch: Any,
    *,
    key: str | None = None,
    token: bool = True,
    headers: dict[str, str] | None = None,
) -> WebSocketClientConnection:
    """Open ``/ws`` with the Jupyter token (default), an API key, or no credentials."""
    hdrs = dict(headers or {})
    if key is not None:
        hdrs["X-API-Key"] = key
    if key is not None or not token:
        hdrs.setdefault("Authorization", "")
    conn: WebSocketClientConnection = await jp_ws_fetch(*API, "ws", headers=hdrs)
    return conn


async def recv(conn: WebSocketClientConnection, timeout: float = 10.0) -> Message:
    """The next message; EOFError when the server closed the connection."""
    text = await asyncio.wait_for(conn.read_message(), timeout)
    if text is None:
        raise EOFError(f"closed: {conn.close_code} {conn.close_reason}")
    message: Message = json.loads(text)
    return message


async def until(
    conn: WebSocketClientConnection, match: Callable[[Message], bool], *, timeout: float = 30.0
) -> list[Message]:
    """Messages up to and including the first that ``match`` accepts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[Message] = []
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no matching message within {timeout} s; saw {seen[-5:]}")
        seen.append(await recv(conn, left))
        if match(seen[-1]):
            return seen


async def call(conn: WebSocketClientConnection, message: Any, *, raw: bool = False) -> Message:
    """Send ``message`` (JSON unless ``raw``) and return the answer (not an event)."""
    await conn.write_message(
        message if raw else json.dumps(message), binary=isinstance(message, bytes)
    )
    seen = await until(conn, lambda m: m["type"] not in ("event", "lagged"), timeout=10)
    return seen[-1]


class RawWebSocket:
    """A WebSocket over a bare socket with a tiny receive buffer, read only when asked."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._buf = buffered
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls, port: int, path: str, headers: dict[str, str], *, rcvbuf: int = 4096
    ) -> RawWebSocket:
        """Connect and finish the handshake (raises on anything but 101)."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            if not chunk:
                raise EOFError("closed during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            sock.close()
            raise ConnectionError(head.decode(errors="replace"))
        return cls(sock, rest)

    async def send(self, message: Any) -> None:
        """One masked text frame (clients must mask)."""
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self._loop.sock_sendall(self.sock, header + mask + masked)

    async def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self._loop.sock_recv(self.sock, 1 << 20)
            if not chunk:
                raise EOFError("the server closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def recv(self, timeout: float = 10.0) -> Message:
        """The next text message (pings and other control frames are skipped)."""
        return await asyncio.wait_for(self._recv(), timeout)

    async def _recv(self) -> Message:
        while True:
            b0, b1 = await self._exactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", await self._exactly(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", await self._exactly(8))
            payload = await self._exactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise EOFError("the server closed the connection")
            if opcode == 0x1:
                message: Message = json.loads(payload)
                return message

    def close(self) -> None:
        """Drop the connection."""
        self.sock.close()
