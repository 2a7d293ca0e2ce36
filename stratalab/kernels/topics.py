"""Names of the Dask event topics that workers publish on.

Workers report to the coordinator over Dask's own pub-sub (``Worker.log_event``
on the worker, ``Client.subscribe_topic`` on the coordinator), never over HTTP.
Both sides must spell a topic identically, and ``kernels`` may not import the
coordinator, so the names live here, in the package both sides can import.
The ``stratalab.`` prefix keeps them apart from Dask's own topics and from any
a user's code publishes.
"""

from __future__ import annotations

__all__ = ["LIFECYCLE", "LOGS", "METRICS"]

#: One event per output line of a job: ``job_id, attempt, seq, stream, line, ts``.
LOGS = "stratalab.logs"
#: Start (and other state) events of a job attempt on a worker.
LIFECYCLE = "stratalab.lifecycle"
#: Step metrics reported by training and evaluation kernels.
METRICS = "stratalab.metrics"
