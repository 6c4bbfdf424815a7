"""Observers: what watches a run (progress bars, metrics, tracking, alerts) without changing it.

:class:`~augledger.observe.base.RunObserver` is the interface; offline runs
(:func:`augledger.run.materialize.materialize`) and the online datasets call it.
"""

from augledger.observe.base import LoggingObserver, RunObserver, RunStart

__all__ = ["LoggingObserver", "RunObserver", "RunStart"]
