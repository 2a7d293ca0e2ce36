"""Poll the server in the background without blocking the notebook's kernel.

Widgets (the dashboard, a live loss curve) refresh by running one op every
few seconds. In a Jupyter kernel an event loop is running, so the poller is
an asyncio task on it (the kernel stays free between polls); elsewhere (a
terminal IPython, a script, a test) it is a daemon thread. Either way a
failure is handed to ``on_error`` and polling goes on, so a widget whose
server goes away says so and recovers by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from stratalab.notebook.errors import ApiError
from stratalab.notebook.transport import AsyncTransport, Connection, Op, SyncTransport, arun, run

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Poller(Generic[T]):
    """Run ``make_op()`` every ``interval`` seconds and hand each result on.

    Parameters
    ----------
    conn
        The server to poll (the poller opens its own connections).
    make_op
        Builds the op of one poll.
    on_result
        Gets each result; returning True stops polling (e.g. the job ended).
    on_error
        Gets each :class:`ApiError` (server away, key revoked, ...).
    interval
        Seconds between polls.
    """

    def __init__(
        self,
        conn: Connection,
        make_op: Callable[[], Op[T]],
        on_result: Callable[[T], bool | None],
        on_error: Callable[[ApiError], None],
        *,
        interval: float = 2.0,
    ) -> None:
        self.conn = conn
        self.make_op = make_op
        self.on_result = on_result
        self.on_error = on_error
        #: seconds between polls.
        self.interval = interval
        #: "asyncio" or "thread" once started, else None.
        self.mode: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether background polling is active."""
        if self._task is not None:
            return not self._task.done()
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> bool:
        """One poll now, blocking; True when ``on_result`` asked to stop."""
        transport = SyncTransport(self.conn)
        try:
            return self._hand_on(self._fetch(transport))
        finally:
            transport.close()

    def start(self) -> None:
        """Start polling: a task on the running event loop, or else a daemon thread."""
        if self.running:
            return
        self._stop.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self.mode = "asyncio"
            self._task = loop.create_task(self._poll_async())
        else:
            self.mode = "thread"
            self._thread = threading.Thread(
                target=self._poll_thread, name="stratalab-poller", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop polling (a poll in flight finishes or is cancelled)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.conn.timeout + 1)

    def _fetch(self, transport: SyncTransport) -> T | ApiError:
        try:
            result: T = run(self.make_op(), transport)
        except ApiError as exc:
            return exc
        except Exception as exc:  # an answer of an unexpected shape: show it, keep polling
            logger.exception("StrataLab background refresh failed")
            return ApiError("INTERNAL_ERROR", f"refresh failed: {type(exc).__name__}")
        return result

    async def _afetch(self, transport: AsyncTransport) -> T | ApiError:
        try:
            result: T = await arun(self.make_op(), transport)
        except ApiError as exc:
            return exc
        except Exception as exc:  # an answer of an unexpected shape: show it, keep polling
            logger.exception("StrataLab background refresh failed")
            return ApiError("INTERNAL_ERROR", f"refresh failed: {type(exc).__name__}")
        return result

    def _hand_on(self, outcome: T | ApiError) -> bool:
        """Give one poll's outcome to the callbacks; True to stop polling."""
        try:
            if isinstance(outcome, ApiError):
                self.on_error(outcome)
                return False
            return bool(self.on_result(outcome))
        except Exception:  # a widget bug must not end the refresh for good
            logger.exception("StrataLab widget update failed")
            return False

    def _poll_thread(self) -> None:
        transport = SyncTransport(self.conn)
        try:
            while not self._stop.is_set():
                if self._hand_on(self._fetch(transport)):
                    return
                self._stop.wait(self.interval)
        finally:
            transport.close()

    async def _poll_async(self) -> None:
        transport = AsyncTransport(self.conn)
        try:
            while not self._stop.is_set():
                if self._hand_on(await self._afetch(transport)):
                    return
                await asyncio.sleep(self.interval)
        finally:
            await transport.close()
