"""The coordinator core: store, queue, dispatcher, state machine and events.

Nothing here imports tornado or jupyter_server; the web layer calls into
:class:`stratalab.scheduler.coordinator.Coordinator` and the core runs work
on Dask through :mod:`stratalab.kernels`.
"""
