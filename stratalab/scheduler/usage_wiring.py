"""Connects usage recording to the parts of the coordinator that run work.

One :class:`~stratalab.scheduler.usage.UsageRecorder` receives what every
kind of work measured on the workers: the task runner's ended attempts, the
training loop's updates and validation passes, evaluations' benchmarks, and
(through a listener on the request-record sink) served requests. Kept out of
``coordinator.py`` so the coordinator only asks for the two services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stratalab.scheduler.efficiency_api import EfficiencyApi
from stratalab.scheduler.usage import UsageRecorder
from stratalab.scheduler.usage_api import UsageApi

if TYPE_CHECKING:
    from stratalab.scheduler.coordinator import Coordinator


def attach_usage(c: Coordinator) -> tuple[UsageApi, EfficiencyApi]:
    """Create the recorder, feed it from every producer, and build the two read services."""
    recorder = UsageRecorder(c.store, c.db, workers=lambda: c.runner.workers)
    c.runner.usage = recorder
    c.training.usage = recorder
    c.train.evaluations.usage = recorder
    c.serving.records.listeners.append(recorder.on_request_record)
    usage = UsageApi(
        config=c.config,
        store=c.store,
        db=c.db,
        recorder=recorder,
        projects=c.serving.projects,
    )
    efficiency = EfficiencyApi(
        store=c.store,
        db=c.db,
        usage=usage,
        client=lambda: c.runner.client,
        owned_job=c.owned_job,
    )
    return usage, efficiency
