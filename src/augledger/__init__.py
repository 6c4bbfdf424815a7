"""augledger: reproducible, versioned data augmentation.

``import augledger`` is light: it imports NumPy, pydantic and PyYAML only. Backends (Albumentations,
PyTorch, pyarrow) load when first used.

The flow::

    spec = augledger.load_spec("aug.yaml")          # strict, safe, data only (or a REF: "digits@production")
    pipe = augledger.compile(spec)                  # resolved + fingerprinted
    result = pipe.apply({"image": img}, key="a/0001.jpg", epoch=3)
    result.sample["image"], result.record           # output and what was applied
    pipe.replay({"image": img}, result.record)      # byte-identical re-run, checked
"""

from augledger._version import __version__
from augledger.env import EnvStamp
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
    ReplayMismatch,
    SampleError,
    SourceError,
    SpecError,
    UnknownOpError,
    UnsafePath,
    WorkerError,
)
from augledger.pipeline import Pipeline, compile_spec
from augledger.record import Augmented, Record, sample_digest
from augledger.registry.refs import load_spec
from augledger.seeding import seed_for
from augledger.spec import OpSpec, PipelineSpec, loads_spec, parse_spec
from augledger.variants import Variants

#: ``augledger.compile(spec)``: the short name the docs use for :func:`compile_spec`. Not in
#: ``__all__``: ``from augledger import *`` must not shadow the builtin ``compile``.
compile = compile_spec

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
    "load_spec",
    "loads_spec",
    "parse_spec",
    "sample_digest",
    "seed_for",
]

# Reprs, tracebacks and docs show the public path (augledger.Pipeline), not the defining module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("augledger."):
        try:
            _obj.__module__ = "augledger"
        except (AttributeError, TypeError):
            pass
del _name, _obj
