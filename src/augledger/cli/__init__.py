"""The ``augledger`` command line: a thin layer over the public API.

Exit codes: 0 success; 1 a check failed (invalid spec, verify mismatch, ...); 2 usage error;
3 a run finished but quarantined some samples; 130/143 a run stopped by SIGINT/SIGTERM.

Modules: :mod:`~augledger.cli._app` (the app, errors), :mod:`~augledger.cli.spec` (``spec ...``), :mod:`~augledger.cli.ops` (``ops list``),
:mod:`~augledger.cli.run` (``run``), :mod:`~augledger.cli.inspect` (``preview``, ``verify``,
``replay``, ``ledger show``), :mod:`~augledger.cli.registry` (``registry ...``), :mod:`~augledger.cli.card` (``card``), :mod:`~augledger.cli.track` (``lineage``, ``dvc-stage``),
:mod:`~augledger.cli.sign` (``keygen``, ``sign``), :mod:`~augledger.cli.policy` (``check-policy``), :mod:`~augledger.cli.guard` (``check-leakage``, ``split``).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``augledger`` script."""
    if "torch" not in sys.modules:
        # Albumentations' __init__ imports its tensor conversion (and with it torch, ~2 s) whenever
        # torch is installed, inside ``suppress(ImportError)``. The CLI never converts to tensors:
        # marking the subpackage absent in this process halves every command's start-up.
        sys.modules.setdefault("albumentations.pytorch", None)  # type: ignore[arg-type]
    from augledger.cli import card, guard, inspect, ops, policy, registry, run, sign, spec, track  # noqa: F401  (each registers its commands)
    from augledger.cli._app import app

    app()
