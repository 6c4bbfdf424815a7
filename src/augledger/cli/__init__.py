"""The ``augledger`` command line: a thin layer over the public API (needs the ``cli`` extra).

Exit codes: 0 success; 1 a check failed (invalid spec, verify mismatch, ...); 2 usage error;
3 a run finished but quarantined some samples (see ``augledger run --help``).
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
    try:
        from augledger.cli._app import app
    except ImportError as exc:  # typer or rich missing
        sys.stderr.write(
            "augledger's command line needs the 'cli' extra: pip install 'augledger[cli]' "
            f"({exc})\n"
        )
        raise SystemExit(1) from None
    app()
