"""augledger: reproducible, versioned data augmentation.

``import augledger`` is light: it imports NumPy, pydantic and PyYAML only. Backends (Albumentations,
PyTorch, pyarrow) load when first used.

The flow::

    spec = augledger.load_spec("aug.yaml")          # strict, safe, data only
    pipe = augledger.compile(spec)                  # resolved + fingerprinted
    result = pipe.apply({"image": img}, key="a/0001.jpg", epoch=3)
    result.sample["image"], result.record           # output and what was applied
    pipe.replay({"image": img}, result.record)      # byte-identical re-run, checked
"""

from augledger._version import __version__
from augledger.env import EnvStamp
from augledger.errors import (
    AugLedgerError,
    BackendError,
    EnvironmentMismatchWarning,
    FingerprintConflict,
    LedgerError,
    OutputBusy,
    ParamError,
    ReplayMismatch,
    SampleError,
    SourceError,
    SpecError,
    UnknownOpError,
    WorkerError,
)
from augledger.pipeline import Pipeline, compile_spec
from augledger.record import Augmented, Record, sample_digest
from augledger.seeding import seed_for
from augledger.spec import OpSpec, PipelineSpec, load_spec, parse_spec

#: ``augledger.compile(spec)``: the short name the docs use for :func:`compile_spec`.
compile = compile_spec

__all__ = [
    "AugLedgerError",
    "Augmented",
    "BackendError",
    "EnvStamp",
    "EnvironmentMismatchWarning",
    "FingerprintConflict",
    "LedgerError",
    "OpSpec",
    "OutputBusy",
    "ParamError",
    "Pipeline",
    "PipelineSpec",
    "Record",
    "ReplayMismatch",
    "SampleError",
    "SourceError",
    "SpecError",
    "UnknownOpError",
    "WorkerError",
    "__version__",
    "compile",
    "compile_spec",
    "load_spec",
    "parse_spec",
    "sample_digest",
    "seed_for",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and getattr(_obj, "__module__", "").startswith("augledger."):
        try:
            _obj.__module__ = "augledger"
        except (AttributeError, TypeError):
            pass
del _name, _obj
