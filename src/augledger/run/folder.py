"""An output folder's layout, who may write into it, and the leftovers of interrupted runs.

Layout::

    OUT/
      manifest.json        the dataset's identity: deterministic, the same bytes for identical runs
      run.json             this run's facts: times, command line, workers, host, absolute paths
      ledger.parquet       one row per output, sorted by (key, epoch)
      augmented/<key>.c<copy>.<fmt>   (--format folder; masks as <key>.c<copy>.mask.png)
      original/<key>                  (--include-original: the source bytes, unchanged)
      original-masks/<key>.png        (--include-original, with masks)
      shards/shard-000000.tar         (--format webdataset)
      .augledger/          run state: identity.json, journal.jsonl, lock, staging/ (webdataset)

A folder holds one dataset version: ``.augledger/identity.json`` names the fingerprint, seed,
options and annotations digest, and a run with anything else is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from augledger.env import EnvStamp
from augledger.errors import FingerprintConflict, OutputBusy
from augledger.io.store import TEMP_MARK, LocalStore

__all__ = [
    "DATA_DIRS",
    "MANIFEST",
    "ORIGINAL_EPOCH",
    "RUN_INFO",
    "STATE_DIR",
    "claim_folder",
    "clean_temporaries",
    "data_files",
    "locked",
    "mask_name",
    "mask_of",
    "output_name",
    "wds_key",
]

STATE_DIR = ".augledger"
MANIFEST = "manifest.json"
RUN_INFO = "run.json"
#: Folders of an output folder that hold data files (each listed in the ledger).
DATA_DIRS = ("augmented", "original", "original-masks", "shards")
ORIGINAL_EPOCH = -1  # ledger rows for --include-original copies carry this epoch
_IDENTITY = "identity.json"


def output_name(key: str, epoch: int, image_format: str) -> str:
    """Relative path of an output. Collision-free: keys are unique and the suffix encodes the copy."""
    if epoch == ORIGINAL_EPOCH:
        return f"original/{key}"
    return f"augmented/{key}.c{epoch}.{image_format}"


def mask_name(key: str, epoch: int) -> str:
    """Relative path of an output's mask. An original's mask has a folder of its own: beside the
    original, ``<key>.mask.png`` could be the original of another source file."""
    if epoch == ORIGINAL_EPOCH:
        return f"original-masks/{key}.png"
    return f"augmented/{key}.c{epoch}.mask.png"


def mask_of(targets: str | None) -> str | None:
    """The stored mask's path in a ledger row's ``targets`` JSON, if any."""
    if not targets or '"mask"' not in targets:
        return None
    mask = json.loads(targets).get("mask")
    return mask if isinstance(mask, str) else None


def wds_key(key: str, epoch: int) -> str:
    """WebDataset ``__key__`` of an output: the sample key with ``%`` and ``.`` escaped.

    WebDataset splits a member name at the first dot of its base name, so dots in keys are
    percent-escaped (``cats/1.jpg`` -> ``cats/1%2Ejpg__c0``); the JSON member holds the plain key.
    """
    escaped = key.replace("%", "%25").replace(".", "%2E")
    return f"{escaped}__orig" if epoch == ORIGINAL_EPOCH else f"{escaped}__c{epoch}"


def claim_folder(out: Path, identity: dict[str, Any]) -> None:
    """Make ``out`` this dataset's folder, or check that it already is.

    Raises:
        FingerprintConflict: ``out`` holds another dataset (naming every difference), or files that
            are not an augledger output folder.
    """
    state = out / STATE_DIR / _IDENTITY
    if out.exists() and not out.is_dir():
        raise FingerprintConflict(f"--out {str(out)!r} is a file; choose a folder (new, empty, or one to resume)")
    if state.is_file():
        held = json.loads(state.read_text())
        if held != identity:
            diffs = [
                f"{k}: folder has {held.get(k)!r}, this run {identity[k]!r}"
                for k in identity
                if k not in ("options", "env") and held.get(k) != identity[k]
            ]
            if held.get("env") != identity.get("env"):
                changed = EnvStamp.from_dict(held["env"]).describe_differences(EnvStamp.from_dict(identity["env"])) if held.get("env") else "unknown"
                diffs.append(f"environment: {changed} (outputs would mix library versions)")
            held_options, options_now = held.get("options") or {}, identity["options"]
            diffs += [
                f"{name}: folder has {held_options.get(name)!r}, this run {options_now.get(name)!r}"
                for name in sorted(set(held_options) | set(options_now))
                if held_options.get(name) != options_now.get(name)
            ]
            raise FingerprintConflict(
                f"{str(out)!r} holds a dataset made by another pipeline version or options ({'; '.join(diffs)}). "
                "Versions are never mixed in one folder: choose another --out, or delete the folder to rebuild."
            )
        return
    if (out / STATE_DIR / "run.json").is_file():
        raise FingerprintConflict(
            f"{str(out)!r} was made by an earlier augledger (before manifest format 2); delete it to rebuild, "
            "or choose another --out"
        )
    if out.exists() and any(out.iterdir()):
        raise FingerprintConflict(
            f"{str(out)!r} is not empty and is not an augledger output folder; choose an empty or new --out"
        )
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    LocalStore(out / STATE_DIR).write(_IDENTITY, json.dumps(identity, indent=2, sort_keys=True).encode())


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``.augledger/lock`` for the run: a second run into the same folder fails at once."""
    state = out / STATE_DIR
    with open(state / "lock", "a+b") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            yield
            return
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputBusy(
                f"another augledger run is writing into {str(out)!r} right now; wait for it to finish "
                "(or stop it), then run again to resume"
            ) from None
        yield


def clean_temporaries(root: Path) -> int:
    """Remove the temporary files of atomic writes a killed run left behind; return how many."""
    removed = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and TEMP_MARK in name:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
    return removed


def data_files(out: Path) -> set[str]:
    """Every data file in the output folder (relative POSIX paths under :data:`DATA_DIRS`), hidden ones excluded."""
    store = LocalStore(out)
    return {path for folder in DATA_DIRS if (out / folder).is_dir() for path in store.list(folder)}
