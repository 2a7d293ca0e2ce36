"""Calling the serving handlers on a worker, from the coordinator or a test.

This is how Dask itself calls worker handlers (``Scheduler.broadcast``,
``Client.run``): a :class:`distributed.core.ConnectionPool` keeps comms open
per address, ``pool(address).<op>(**msg)`` writes one message and reads the
reply. Reusing a pooled comm is what brings a call down to about half a
millisecond: no connect, no handshake, no scheduler in the path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from distributed.comm.core import CommClosedError
from distributed.core import ConnectionPool

from stratalab.errors import GatewayTimeout, ServiceUnavailable
from stratalab.kernels.serving.protocol import (
    OP_INFER,
    decode_outputs,
    encode_inputs,
    raise_for_reply,
)

logger = logging.getLogger(__name__)


async def call_worker(
    rpc_pool: ConnectionPool,
    address: str,
    *,
    op: str = OP_INFER,
    timeout: float | None = None,
    **msg: Any,
) -> dict[str, Any]:
    """Send one message to a serving handler on ``address`` and return its reply.

    Parameters
    ----------
    rpc_pool:
        A started ``ConnectionPool`` (``await ConnectionPool(limit=...)``), or
        a ``Client``'s ``client.rpc``. Await this on the pool's event loop
        (for a synchronous ``Client``: ``client.sync(call_worker, client.rpc, ...)``).
    address:
        The worker's address (``tcp://10.0.0.5:38765``).
    op:
        Handler name: ``stratalab_infer`` (default), ``stratalab_models``,
        ``stratalab_unload``, ``stratalab_load``.
    timeout:
        Seconds before giving up; the comm is then closed, not reused.
    **msg:
        The handler's arguments. numpy arrays anywhere in ``inputs`` are sent
        in the wire form.

    Returns
    -------
    The reply, with wire-form arrays in ``outputs`` decoded to numpy.

    Raises
    ------
    StrataLabError
        The worker's error, as its original class (``InvalidInput``, ``NoModel``...).
    GatewayTimeout
        No reply within ``timeout``.
    ServiceUnavailable
        The worker could not be reached or dropped the connection; another
        worker holding the model may be tried.
    """
    if "inputs" in msg:
        msg["inputs"] = encode_inputs(msg["inputs"])
    call = getattr(rpc_pool(address), op)
    try:
        if timeout is None:
            reply = await call(**msg)
        else:
            try:
                reply = await asyncio.wait_for(call(**msg), timeout)
            except asyncio.TimeoutError:
                raise GatewayTimeout(
                    f"worker did not answer within {timeout:g} s", details={"worker": address}
                ) from None
    except (CommClosedError, OSError) as exc:
        # (TimeoutError is an OSError: connect timeouts inside Dask land here too.)
        logger.warning("serving call %s to %s failed: %r", op, address, exc)
        raise ServiceUnavailable(
            "the worker serving this model is unreachable", details={"worker": address}
        ) from exc
    result = raise_for_reply(reply)
    if "outputs" in result:
        result["outputs"] = decode_outputs(result["outputs"])
    return result
