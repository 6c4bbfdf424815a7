"""The augledger exception tree.

Every error raised on purpose by augledger derives from :class:`AugLedgerError`, so callers can
catch one type. Messages name the location, what was expected, what was given, and a fix::

    AugLedgerError
    ├── SpecError                 the spec file or object is invalid
    │   ├── UnknownOpError        an op name that is not on the allowlist
    │   └── ParamError            a param of a known op is misspelled or has a bad value
    ├── SampleError               a sample handed to a pipeline does not match the spec's targets
    ├── BackendError              an optional backend is missing (with the pip install hint)
    ├── ReplayMismatch            a replay did not reproduce what the record says
    ├── LedgerError               a ledger or output folder is unreadable or inconsistent
    │   └── FingerprintConflict   an output folder holds a different pipeline version
    └── SourceError               a source folder or annotation manifest cannot be read

:class:`EnvironmentMismatchWarning` is a warning, not an error: replaying under other library
versions may still match, and augledger reports rather than refuses.
"""

from __future__ import annotations

__all__ = [
    "AugLedgerError",
    "BackendError",
    "EnvironmentMismatchWarning",
    "FingerprintConflict",
    "LedgerError",
    "ParamError",
    "ReplayMismatch",
    "SampleError",
    "SourceError",
    "SpecError",
    "UnknownOpError",
]


class AugLedgerError(Exception):
    """Base class of every error augledger raises on purpose."""


class SpecError(AugLedgerError, ValueError):
    """The spec is invalid. ``location`` is a path such as ``ops[1].params.rotate`` (or ``""``)."""

    def __init__(self, message: str, *, location: str = "") -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location


class UnknownOpError(SpecError):
    """An op name that is not on augledger's allowlist."""


class ParamError(SpecError):
    """A param of a known op is misspelled, missing or out of range."""


class SampleError(AugLedgerError, ValueError):
    """A sample does not fit the pipeline (missing image, undeclared target, bad annotation)."""


class BackendError(AugLedgerError, ImportError):
    """An optional dependency is not installed; the message carries the pip install hint."""


class ReplayMismatch(AugLedgerError):
    """Re-running a record produced other params or other output bytes than it records."""


class LedgerError(AugLedgerError):
    """A ledger, manifest or output folder is missing, unreadable or inconsistent."""


class FingerprintConflict(LedgerError):
    """An output folder already holds a dataset made by a different pipeline version or seed."""


class SourceError(AugLedgerError):
    """A source folder or annotation manifest cannot be read as a whole."""


class OutputBusy(LedgerError):
    """Another run is writing into the same output folder right now."""


class WorkerError(AugLedgerError):
    """A worker process of a run died (killed, out of memory, a crash in native code)."""


class EnvironmentMismatchWarning(UserWarning):
    """The library versions differ from those a record was made with; bytes may differ."""
