"""Where augmentation executes: offline runs (plan -> engine -> commit), verify/replay, and online loaders.

Offline, in the order data flows: :mod:`~augledger.run.sources` (keys and annotations),
:mod:`~augledger.run.plan` (what is left to do), :mod:`~augledger.run.work` (one source file's
outputs), :mod:`~augledger.run.engines` (where that work runs), :mod:`~augledger.run.journal`,
:mod:`~augledger.run.shards` and :mod:`~augledger.run.manifest` (committing), all driven by
:mod:`~augledger.run.materialize`; :mod:`~augledger.run.verify` reads the result back. Online:
:mod:`augledger.run.online` (public as :mod:`augledger.torch`).
"""
