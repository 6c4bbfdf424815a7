"""The augledger exception tree: every error augledger raises on purpose, in one module.

Every error derives from :class:`AugLedgerError`, so callers can catch one type. Messages name the
location, what was expected, what was given, and a fix::

    AugLedgerError
    ├── SpecError                 the spec file or object is invalid
    │   ├── UnknownOpError        an op name that is not on the allowlist
    │   └── ParamError            a param of a known op is misspelled or has a bad value
    ├── SampleError               a sample handed to a pipeline does not match the spec's targets
    ├── LoaderError               a data-loading setup that cannot be deterministic (online)
    ├── Quarantined               one input cannot be used; ``reason`` is a short code (bulk runs)
    ├── UnsafePath                a path leaves the folder it must stay in (``../``, absolute, symlink)
    ├── BackendError              an optional backend is missing (with the pip install hint)
    ├── ReplayMismatch            a replay did not reproduce what the record says
    ├── LedgerError               a ledger or output folder is unreadable or inconsistent
    │   ├── FingerprintConflict   an output folder holds a different pipeline version
    │   └── OutputBusy            another run is writing into the same output folder
    ├── SourceError               a source folder or annotation manifest cannot be read
    ├── RegistryError             a registry REF, lifecycle move or registry file is refused
    │   ├── RegistryNotFound      there is no registry where one was looked for
    │   ├── LifecycleError        an illegal transition, a four-eyes refusal, a retired or unapproved version
    │   └── AuditFailure          the registry's history chain or a stored spec does not check out
    ├── PolicyViolation           a spec, a sampled value or a finished dataset breaks an intensity policy
    ├── SignatureError            a manifest signature is missing, malformed or does not verify; a bad key
    ├── WorkerError               a worker process of a run died
    └── Interrupted               a run was stopped by SIGINT/SIGTERM (what finished is kept)

:class:`EnvironmentMismatchWarning` is a warning, not an error: replaying under other library
versions may still match, and augledger reports rather than refuses. :class:`DeprecatedVersionWarning`
says a registry REF resolved to a deprecated pipeline version (a retired one is refused).
"""

from __future__ import annotations

import signal

__all__ = [
    "AuditFailure",
    "AugLedgerError",
    "BackendError",
    "DeprecatedVersionWarning",
    "EnvironmentMismatchWarning",
    "FingerprintConflict",
    "Interrupted",
    "LedgerError",
    "LifecycleError",
    "LoaderError",
    "OutputBusy",
    "ParamError",
    "PolicyViolation",
    "Quarantined",
    "RegistryError",
    "RegistryNotFound",
    "ReplayMismatch",
    "SampleError",
    "SignatureError",
    "SourceError",
    "SpecError",
    "UnknownOpError",
    "UnsafePath",
    "WorkerError",
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


class LoaderError(AugLedgerError, ValueError):
    """The data-loading setup cannot give deterministic augmentation (e.g. an index without its epoch)."""


class Quarantined(AugLedgerError):
    """One input cannot be used; ``reason`` is a short code, the message says why and what to do.

    Bulk runs record it in the ledger (``status: quarantined``, ``error: "<reason>: <message>"``)
    and go on. Reasons are listed in the README (``empty``, ``corrupt``, ``alpha``, ...).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[Quarantined], tuple[str, str]]:
        return (Quarantined, (self.reason, str(self)))


class UnsafePath(AugLedgerError, ValueError):
    """A path is absolute, climbs out with ``..``, holds a NUL byte, or resolves (through a symlink)
    outside the folder it must stay in."""


class BackendError(AugLedgerError, ImportError):
    """An optional dependency is not installed; the message carries the pip install hint."""


class ReplayMismatch(AugLedgerError):
    """Re-running a record produced other params or other output bytes than it records."""


class LedgerError(AugLedgerError):
    """A ledger, manifest or output folder is missing, unreadable or inconsistent."""


class FingerprintConflict(LedgerError):
    """An output folder already holds a dataset made by a different pipeline version or seed."""


class OutputBusy(LedgerError):
    """Another run is writing into the same output folder right now."""


class SourceError(AugLedgerError):
    """A source folder or annotation manifest cannot be read as a whole."""


class RegistryError(AugLedgerError):
    """A registry REF does not resolve, or the registry refuses an action or cannot be opened."""


class RegistryNotFound(RegistryError):
    """No registry where one was looked for (the path, ``$AUGLEDGER_REGISTRY``, the parent folders)."""


class LifecycleError(RegistryError):
    """An illegal lifecycle move, a four-eyes refusal, or a version whose state forbids its use."""


class AuditFailure(RegistryError):
    """``registry audit`` found a history row or stored spec that does not check out; names the first."""


class PolicyViolation(AugLedgerError):
    """A spec, a value drawn while running, or a finished dataset breaks an intensity policy.

    ``violations`` holds one line per finding, each naming the op path, the param, the bound and
    the value. (A malformed policy *file* is a :class:`SpecError`, located like a spec's.)
    """

    def __init__(self, message: str, violations: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)


class SignatureError(AugLedgerError):
    """A manifest signature is missing where one is required, malformed, or made by another key;
    or a key file cannot be read."""


class WorkerError(AugLedgerError):
    """A worker process of a run died (killed, out of memory, a crash in native code)."""


class Interrupted(AugLedgerError):
    """A run was stopped by a signal; every complete output was journaled, so a rerun resumes.

    ``signum`` is the signal (``SIGINT`` or ``SIGTERM``); ``exit_code`` is the shell's convention
    for it (130 or 143).
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class EnvironmentMismatchWarning(UserWarning):
    """The library versions differ from those a record was made with; bytes may differ."""


class DeprecatedVersionWarning(UserWarning):
    """A registry REF resolved to a deprecated pipeline version; it still runs, but is on its way out."""
