"""augledger: reproducible, versioned data augmentation.

``import augledger`` is light: it imports the exception tree only, and each public name loads its
module on first use (PEP 562), so ``augledger.load_spec`` brings in pydantic and PyYAML, and
``augledger.Pipeline`` NumPy; backends (Albumentations, PyTorch, pyarrow, SQLAlchemy) load when a
pipeline or registry first needs them. The command line starts fast because of it.

The flow::

    spec = augledger.load_spec("aug.yaml")          # strict, safe, data only (or a REF: "digits@production")
    pipe = augledger.compile(spec)                  # resolved + fingerprinted
    result = pipe.apply({"image": img}, key="a/0001.jpg", epoch=3)
    result.sample["image"], result.record           # output and what was applied
    pipe.replay({"image": img}, result.record)      # byte-identical re-run, checked
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from augledger._version import __version__
from augledger.errors import (
    AuditFailure,
    AugLedgerError,
    BackendError,
    DeprecatedVersionWarning,
    EnvironmentMismatchWarning,
    FingerprintConflict,
    Interrupted,
    LedgerError,
    LifecycleError,
    LoaderError,
    OutputBusy,
    ParamError,
    Quarantined,
    RegistryError,
    RegistryNotFound,
    ReplayMismatch,
    SampleError,
    SourceError,
    SpecError,
    UnknownOpError,
    UnsafePath,
    WorkerError,
)

if TYPE_CHECKING:
    from augledger.env import EnvStamp
    from augledger.ops.image.adopt import from_albumentations
    from augledger.pipeline import Pipeline, compile_spec
    from augledger.pipeline import compile_spec as compile  # noqa: F401  (augledger.compile, for type checkers)
    from augledger.record import Augmented, Record, sample_digest
    from augledger.registry.refs import load_spec
    from augledger.seeding import seed_for
    from augledger.spec import OpSpec, PipelineSpec, loads_spec, parse_spec
    from augledger.variants import Variants

#: Public name -> (module, attribute), imported on first access. ``augledger.compile(spec)`` is the
#: short name the docs use for :func:`compile_spec`; it is not in ``__all__``: ``from augledger import *``
#: must not shadow the builtin ``compile``.
_LAZY: dict[str, tuple[str, str]] = {
    "EnvStamp": ("augledger.env", "EnvStamp"),
    "Pipeline": ("augledger.pipeline", "Pipeline"),
    "compile_spec": ("augledger.pipeline", "compile_spec"),
    "compile": ("augledger.pipeline", "compile_spec"),
    "Augmented": ("augledger.record", "Augmented"),
    "Record": ("augledger.record", "Record"),
    "sample_digest": ("augledger.record", "sample_digest"),
    "load_spec": ("augledger.registry.refs", "load_spec"),
    "seed_for": ("augledger.seeding", "seed_for"),
    "OpSpec": ("augledger.spec", "OpSpec"),
    "PipelineSpec": ("augledger.spec", "PipelineSpec"),
    "loads_spec": ("augledger.spec", "loads_spec"),
    "parse_spec": ("augledger.spec", "parse_spec"),
    "Variants": ("augledger.variants", "Variants"),
    "from_albumentations": ("augledger.ops.image.adopt", "from_albumentations"),
}

__all__ = [
    "AuditFailure",
    "AugLedgerError",
    "Augmented",
    "BackendError",
    "DeprecatedVersionWarning",
    "EnvStamp",
    "EnvironmentMismatchWarning",
    "FingerprintConflict",
    "Interrupted",
    "LedgerError",
    "LifecycleError",
    "LoaderError",
    "OpSpec",
    "OutputBusy",
    "ParamError",
    "Pipeline",
    "PipelineSpec",
    "Quarantined",
    "Record",
    "RegistryError",
    "RegistryNotFound",
    "ReplayMismatch",
    "SampleError",
    "SourceError",
    "SpecError",
    "UnknownOpError",
    "UnsafePath",
    "Variants",
    "WorkerError",
    "__version__",
    "compile_spec",
    "from_albumentations",
    "load_spec",
    "loads_spec",
    "parse_spec",
    "sample_digest",
    "seed_for",
]


def _public(obj: Any) -> Any:
    # Reprs, tracebacks and docs show the public path (augledger.Pipeline), not the defining module.
    if getattr(obj, "__module__", "").startswith("augledger."):
        try:
            obj.__module__ = "augledger"
        except (AttributeError, TypeError):
            pass
    return obj


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'augledger' has no attribute {name!r}") from None
    value = _public(getattr(importlib.import_module(module), attr))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_LAZY, "__version__"})


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name
