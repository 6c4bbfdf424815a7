"""Offline materialisation: a source folder in, a versioned, verifiable augmented dataset out.

Layout of an output folder::

    OUT/
      manifest.json         fingerprint, resolved spec, seed, environment, source digest, counts, times
      ledger.parquet        one row per output (see augledger.ledger), sorted by (key, epoch)
      augmented/<key>.c<copy>.<fmt>      (--format folder)
      original/<key>                     (--include-original: the source bytes, unchanged)
      shards/shard-000000.tar            (--format webdataset)
      .augledger/           run state: run.json (what this folder holds) and journal.jsonl

How the promises are kept:

* **Determinism.** Each output is a pure function of (fingerprint, seed, copy, key) and the source
  bytes. Workers share nothing; results arrive in any order; the ledger is sorted at the end, so
  neither the worker count nor timing changes a byte of outputs or ledger rows.
* **Nothing lost, nothing duplicated.** A worker writes each file to a temporary name and renames
  it; the main process then appends the file's row to the journal. On restart, journal rows whose
  source and output still match their digests are kept, everything else is redone (identically).
  A killed run restarted with the same command ends with the files and ledger of an uninterrupted run.
* **One version per folder.** ``.augledger/run.json`` names the fingerprint, seed, options and
  annotations digest; a run with anything else refuses (:class:`~augledger.errors.FingerprintConflict`).
* **Bad input is quarantined.** A sample that cannot be read, decoded, annotated or encoded gets
  a ``quarantined`` row with its reason and the run goes on.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Literal

from numpy.typing import NDArray

from augledger._canonical import canonical_json
from augledger._version import __version__
from augledger.env import EnvStamp
from augledger.errors import FingerprintConflict, LedgerError, OutputBusy, SampleError, SourceError, WorkerError
from augledger.ledger import LedgerWriter
from augledger.pipeline import Pipeline
from augledger.record import Record, _plain
from augledger.run.imageio import DEFAULT_MAX_PIXELS, Quarantined, decode_image, encode_image
from augledger.run.sources import Annotation, FolderSource, SourcesDigest, file_digest, load_annotations

__all__ = ["EXIT_QUARANTINED", "RunOptions", "RunResult", "materialize", "output_name", "wds_key"]

log = logging.getLogger(__name__)

#: Exit code of ``augledger run`` when the run finished but quarantined at least one sample.
EXIT_QUARANTINED = 3
STATE_DIR = ".augledger"
MANIFEST_FORMAT = 1
ORIGINAL_EPOCH = -1  # ledger rows for --include-original copies carry this epoch


@dataclass(frozen=True)
class RunOptions:
    """What to produce. Everything except ``workers`` and ``chunk_size`` is part of the folder's identity."""

    copies: int = 1
    workers: int = 1
    include_original: bool = False
    format: Literal["folder", "webdataset"] = "folder"
    image_format: Literal["png", "jpg"] = "png"
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard_max_count: int = 1000
    shard_max_bytes: int = 1 << 30
    chunk_size: int = 4

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError(f"copies must be >= 1; got {self.copies}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1; got {self.workers}")
        if self.format not in ("folder", "webdataset"):
            raise ValueError(f"format must be 'folder' or 'webdataset'; got {self.format!r}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg'; got {self.image_format!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1; got {self.max_pixels}")

    def identity(self) -> dict[str, Any]:
        """The options that change what the folder holds (not how fast it is made)."""
        d = asdict(self)
        for k in ("workers", "chunk_size"):
            d.pop(k)
        return d


@dataclass
class RunResult:
    """What a run produced: the manifest written to ``out/manifest.json`` and where."""

    out: Path
    manifest: dict[str, Any]
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: Outputs a previous, interrupted or finished run had already made and that still verified.
    reused: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_QUARANTINED if self.quarantined else 0


def output_name(key: str, epoch: int, image_format: str) -> str:
    """Relative path of an output. Collision-free: keys are unique and the suffix encodes the copy."""
    if epoch == ORIGINAL_EPOCH:
        return f"original/{key}"
    return f"augmented/{key}.c{epoch}.{image_format}"


def wds_key(key: str, epoch: int) -> str:
    """WebDataset ``__key__`` of an output: the sample key with ``%`` and ``.`` escaped.

    WebDataset splits a member name at the first dot of its base name, so dots in keys are
    percent-escaped (``cats/1.jpg`` -> ``cats/1%2Ejpg__c0``); the JSON member holds the plain key.
    """
    escaped = key.replace("%", "%25").replace(".", "%2E")
    return f"{escaped}__orig" if epoch == ORIGINAL_EPOCH else f"{escaped}__c{epoch}"


# -- per-sample work (runs in worker processes) ----------------------------------------------------


@dataclass(frozen=True)
class _Job:
    pipeline: Pipeline
    source_root: str
    write_root: str
    options: RunOptions


@dataclass(frozen=True)
class _Task:
    key: str
    epochs: tuple[int, ...]
    original: bool
    annotation: Annotation | None


def build_sample(
    image: NDArray[Any], annotation: Annotation | None, targets: Mapping[str, Any], source_root: str
) -> dict[str, Any]:
    """The pipeline input for one image: the image plus the targets the spec declares.

    Raises:
        Quarantined: the annotation does not fit the image (e.g. a mask of another size).
    """
    sample: dict[str, Any] = {"image": image}
    ann = annotation or Annotation()
    if targets.get("bboxes"):
        sample["bboxes"] = ann.bboxes or []
        for name in targets["bboxes"]["label_fields"]:
            sample[name] = ann.extra.get(name) or []
    if targets.get("keypoints"):
        sample["keypoints"] = ann.keypoints or []
        for name in targets["keypoints"]["label_fields"]:
            sample.setdefault(name, ann.extra.get(name) or [])
    if targets.get("mask") and ann.mask:
        from PIL import Image

        try:
            with Image.open(os.path.join(source_root, ann.mask)) as m:
                import numpy as np

                mask = np.asarray(m.convert("L") if m.mode not in ("L", "1", "P", "I;16", "I") else m)
        except OSError as exc:
            raise Quarantined("annotation", f"mask {ann.mask!r} cannot be read: {exc}") from None
        if mask.shape[:2] != image.shape[:2]:
            raise Quarantined(
                "annotation", f"mask {ann.mask!r} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        sample["mask"] = mask
    return sample


def _targets_json(out: Mapping[str, Any], annotation: Annotation | None, mask_path: str | None) -> str | None:
    data: dict[str, Any] = {}
    if annotation is not None and annotation.label is not None:
        data["label"] = annotation.label
    for name, value in out.items():
        if name not in ("image", "mask"):
            data[name] = _plain(value)
    if mask_path is not None:
        data["mask"] = mask_path
    return canonical_json(data).decode() if data else None


def augment_one(job: _Job, sample: Mapping[str, Any], key: str, epoch: int) -> tuple[bytes, Any, bytes | None]:
    """Augment and encode one output: ``(image bytes, result, mask bytes or None)``."""
    result = job.pipeline.apply(sample, key=key, epoch=epoch)
    encoded = encode_image(result.sample["image"], job.options.image_format)
    mask = result.sample.get("mask")
    mask_bytes = encode_image(mask, "png") if mask is not None else None
    return encoded, result, mask_bytes


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _row(key: str, epoch: int, seed: str | None, **values: Any) -> dict[str, Any]:
    return {"key": key, "epoch": epoch, "seed": seed, "status": "ok", "error": None, "note": None, "ops": None, "targets": None,
            "source_digest": None, "output_path": None, "output_digest": None} | values


#: Writes one output file atomically and returns its digest, now or (a Future) later.
_Writer = Callable[[Path, bytes], "str | Future[str]"]


_PENDING = "_pending_write"  # a deferred write whose digest the row already has (an original, a mask)


def _write_now(path: Path, data: bytes) -> str:
    _atomic_write(path, data)
    return file_digest(data)


def _process(job: _Job, task: _Task, write: _Writer = _write_now) -> list[dict[str, Any]]:
    """All outputs of one source image; never raises for a bad sample (it is quarantined).

    Files go through ``write``; digests it defers are filled in by :func:`_settle`.
    """
    key, fmt = task.key, job.options.image_format
    pipe = job.pipeline

    def seed_hex(epoch: int) -> str | None:
        # Only quarantine rows need it here; an ok row takes the seed from its record.
        return None if epoch == ORIGINAL_EPOCH else f"{pipe.sample_seed(key=key, epoch=epoch):032x}"

    wanted = [*((ORIGINAL_EPOCH,) if task.original else ()), *task.epochs]

    def quarantine_all(reason: str, message: str, source_digest: str | None) -> list[dict[str, Any]]:
        log.warning("quarantined %s: %s: %s", key, reason, message)
        return [
            _row(key, e, seed_hex(e), status="quarantined", error=f"{reason}: {message}", source_digest=source_digest)
            for e in wanted
        ]

    try:
        with open(os.path.join(job.source_root, key), "rb") as f:
            data = f.read()
    except OSError as exc:
        return quarantine_all("unreadable", str(exc), None)
    src = file_digest(data)
    try:
        decoded = decode_image(data, max_pixels=job.options.max_pixels)
        sample = build_sample(decoded.image, task.annotation, pipe.resolved_targets, job.source_root)
    except Quarantined as q:
        return quarantine_all(q.reason, str(q), src)
    rows = []
    note = f"converted {decoded.conversion}" if decoded.conversion else None
    if task.original:
        rel = output_name(key, ORIGINAL_EPOCH, fmt)
        written = write(Path(job.write_root, rel), data)
        row = _row(key, ORIGINAL_EPOCH, None, ops="[]", targets=_targets_json({}, task.annotation, None),
                   source_digest=src, output_path=rel, output_digest=src)  # the same bytes: no second hash
        if isinstance(written, Future):
            row[_PENDING] = written
        rows.append(row)
    for epoch in task.epochs:
        try:
            encoded, result, mask_bytes = augment_one(job, sample, key, epoch)
        except SampleError as exc:
            cause = exc.__cause__
            message = str(cause or exc) if isinstance(cause, (ValueError, TypeError)) else str(exc)
            # Boxes/points the backend rejects are the annotation's fault; anything else (e.g. a crop
            # larger than this image) is the op's failure on this sample.
            annotated = any(len(sample.get(k) or ()) for k in ("bboxes", "keypoints")) or "mask" in sample
            reason = "annotation" if annotated and isinstance(cause, ValueError) else "augment"
            log.warning("quarantined %s copy %d: %s: %s", key, epoch, reason, message)
            rows.append(_row(key, epoch, seed_hex(epoch), status="quarantined", error=f"{reason}: {message}",
                             source_digest=src))
            continue
        except Quarantined as q:
            rows.append(_row(key, epoch, seed_hex(epoch), status="quarantined", error=f"{q.reason}: {q}",
                             source_digest=src))
            continue
        rel = output_name(key, epoch, fmt)
        mask_rel, mask_written = None, None
        if mask_bytes is not None:
            mask_rel = f"augmented/{key}.c{epoch}.mask.png"
            mask_written = write(Path(job.write_root, mask_rel), mask_bytes)
        row = _row(
            key, epoch, result.record.seed,
            ops=result.record,  # a Record until _run_chunk converts it, with the rest of its chunk
            targets=_targets_json(result.sample, task.annotation, mask_rel),
            source_digest=src, output_path=rel, output_digest=write(Path(job.write_root, rel), encoded), note=note,
        )
        if isinstance(mask_written, Future):
            row[_PENDING] = mask_written
        rows.append(row)
    return rows


_WORKER_JOB: _Job | None = None


def _tune_malloc(*, restore: bool = False) -> None:
    """Keep freed image buffers in the heap instead of handing them back to the kernel.

    glibc serves large blocks (every decoded, augmented and encoded image) with fresh ``mmap``s
    and trims the heap eagerly, under thresholds it moves as it goes. Depending on the order in
    which a sample's arrays are freed, each image can then cost ~200 page faults of zeroed memory
    (measured here: 256 against 45 faults per image, 15% of the time per image). Fixed, high
    thresholds make the allocator reuse the same memory for every sample; RSS stays at the peak
    working set. Worker processes keep this; an in-process run calls it again with
    ``restore=True`` to put glibc's starting thresholds (128 KiB) back (glibc's moving of them
    stays off in that process). A no-op off glibc.
    """
    import ctypes

    try:
        # The symbols already loaded into this process (libc's among them); ctypes.util.find_library
        # would fork ``ldconfig`` from a process of several hundred MB.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("mallopt unavailable; leaving the allocator as it is")
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_bytes, trim_bytes = (128 << 10, 128 << 10) if restore else (32 << 20, 256 << 20)
    if not (mallopt(m_mmap_threshold, mmap_bytes) and mallopt(m_trim_threshold, trim_bytes)):
        log.debug("mallopt refused the thresholds; leaving the allocator as it is")


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the run's main process dies (Linux).

    Otherwise a worker of a killed run lives on, re-parented to init, and goes on writing into
    the output folder next to a resumed run.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        log.debug("prctl unavailable; a worker may outlive a killed run")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(job: _Job, parent: int) -> None:
    global _WORKER_JOB
    import cv2

    _die_with_parent(parent)
    _tune_malloc()
    # Shared-nothing workers: one OpenCV thread each, so N workers use N cores without oversubscription.
    cv2.setNumThreads(1)
    _WORKER_JOB = job


def _run_chunk(job: _Job, tasks: Sequence[_Task], write: _Writer = _write_now) -> list[dict[str, Any]]:
    """Process a few tasks, then do their rows' bookkeeping together.

    Converting the applied params of a handful of records in one go, after the pixel work, costs
    much less than interleaving each conversion with image processing that has just flushed the
    CPU caches. Files that ``write`` defers may still be in flight: :func:`_settle` the rows
    before they reach the journal (a row there promises a complete file).
    """
    rows: list[dict[str, Any]] = []
    for task in tasks:
        rows.extend(_process(job, task, write))
    for row in rows:
        record = row["ops"]
        if isinstance(record, Record):
            row["ops"] = canonical_json(list(record.ops)).decode()
    return rows


def _settle(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wait for the rows' deferred writes; a failed write raises here and ends the run."""
    for row in rows:
        pending = row.pop(_PENDING, None)
        if pending is not None:
            pending.result()
        if isinstance(row["output_digest"], Future):
            row["output_digest"] = row["output_digest"].result()
    return rows


def _process_chunk(tasks: list[_Task]) -> list[dict[str, Any]]:
    assert _WORKER_JOB is not None, "worker used before _init_worker"
    return _settle(_run_chunk(_WORKER_JOB, tasks))


def _chunks(tasks: Iterable[_Task], size: int) -> Iterator[list[_Task]]:
    chunk: list[_Task] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _execute(job: _Job, tasks: Iterable[_Task]) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of each task (or chunk of tasks) as workers finish them, in any order."""
    if job.options.workers == 1:
        # In this process, with OpenCV's own threads: measured here, a lone worker process (one
        # OpenCV thread, results shipped back) ran 10-20% slower than this. Writing and hashing
        # the files release the GIL, so a writer thread overlaps them with the next image's work.
        _preload_ledger_backend()
        _tune_malloc()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="augledger-writer") as writer:

                def write_later(path: Path, data: bytes) -> Future[str]:
                    return writer.submit(_write_now, path, data)

                # One chunk behind: a chunk's last files are written while the next one is worked on.
                previous: list[dict[str, Any]] | None = None
                for chunk in _chunks(tasks, job.options.chunk_size):
                    rows = _run_chunk(job, chunk, write_later)
                    if previous is not None:
                        yield _settle(previous)
                    previous = rows
                if previous is not None:
                    yield _settle(previous)
        finally:
            _tune_malloc(restore=True)
        return
    import cv2

    # With OpenCV's thread pool alive in the parent, forked children can hang (2 of 30 did here).
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    # concurrent.futures rather than multiprocessing.Pool: when a worker dies (the OOM killer, a
    # crash in native code), Pool replaces it and waits forever for the chunk it held; the
    # executor reports it. (Throughput and the main process's CPU time measured the same.)
    chunks = _chunks(tasks, job.options.chunk_size)
    in_flight: set[Future[list[dict[str, Any]]]] = set()
    try:
        with ProcessPoolExecutor(
            job.options.workers, mp_context=mp.get_context(method), initializer=_init_worker, initargs=(job, os.getpid())
        ) as pool:

            def submit_next() -> None:
                chunk = next(chunks, None)
                if chunk is not None:
                    in_flight.add(pool.submit(_process_chunk, chunk))

            # Bounded work in flight, so memory stays flat however large the dataset is.
            for _ in range(job.options.workers * 4):
                submit_next()
            _preload_ledger_backend()  # only once the workers exist: never fork while a thread imports
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    in_flight.discard(future)
                    try:
                        rows = future.result()
                    except BrokenProcessPool as exc:
                        raise WorkerError(
                            "a worker process died (killed, out of memory, or a crash in native code) while "
                            "augmenting; what finished is kept: run the same command again to resume"
                        ) from exc
                    submit_next()
                    yield rows
    finally:
        cv2.setNumThreads(previous_threads)


# -- run state, resume and finalisation --------------------------------------------------------------


def _preload_ledger_backend() -> None:
    """Import the ledger writer's backend (pyarrow, ~0.3 s) on a thread while samples are processed."""
    threading.Thread(target=_import_ledger_backend, name="augledger-ledger-import", daemon=True).start()


def _import_ledger_backend() -> None:
    try:
        import pyarrow.json
        import pyarrow.parquet  # noqa: F401
    except Exception:  # pragma: no cover - write_ledger reports a missing pyarrow itself
        log.debug("pre-importing the ledger backend failed", exc_info=True)


def _identity(pipe: Pipeline, options: RunOptions, annotations_digest: str | None) -> dict[str, Any]:
    # The annotations' digest too: outputs of edited boxes or labels must not be reused silently.
    return {"fingerprint": pipe.fingerprint, "seed": pipe.seed, "options": options.identity(),
            "annotations": annotations_digest}


def _claim_folder(out: Path, identity: dict[str, Any]) -> None:
    state = out / STATE_DIR / "run.json"
    if state.is_file():
        held = json.loads(state.read_text())
        if held != identity:
            diffs = [
                f"{k}: folder has {held.get(k)!r}, this run {identity[k]!r}"
                for k in identity
                if k != "options" and held.get(k) != identity[k]
            ]
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
    if out.exists() and any(out.iterdir()):
        raise FingerprintConflict(
            f"{str(out)!r} is not empty and is not an augledger output folder; choose an empty or new --out"
        )
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    _atomic_write(state, json.dumps(identity, indent=2, sort_keys=True).encode())


def _clean_temporaries(root: Path) -> int:
    removed = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and ".tmp-" in name:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
    return removed


class _Journal:
    """``.augledger/journal.jsonl``: one JSON line per finished output, appended as work completes.

    Only ``(key, epoch) -> byte offset`` stays in memory; rows are read back from the file when
    the ledger is written, so the main process does not grow with the rows of a large dataset.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._append: BinaryIO | None = None
        self._read: BinaryIO | None = None

    def open(self) -> dict[tuple[str, int], int]:
        """Open for appending; return the offset of the last line of every (key, epoch) already there.

        A line cut short by a killed run is dropped (its output is redone), so that the next
        line does not run into it.
        """
        index: dict[tuple[str, int], int] = {}
        end = 0
        if self.path.is_file():
            with self.path.open("rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        row = json.loads(line)
                        index[(row["key"], row["epoch"])] = end
                    except (ValueError, KeyError, TypeError):
                        pass  # a damaged line: that output is redone
                    end += len(line)
        self._append = open(self.path, "ab")  # closed by close()
        self._append.truncate(end)
        self._append.seek(end)
        return index

    def append(self, row: Mapping[str, Any]) -> int:
        assert self._append is not None, "journal not open"
        offset = self._append.tell()
        self._append.write(json.dumps(row, sort_keys=True).encode() + b"\n")
        return offset

    def flush(self) -> None:
        assert self._append is not None, "journal not open"
        self._append.flush()

    def row(self, offset: int) -> dict[str, Any]:
        self.flush()
        if self._read is None:
            self._read = open(self.path, "rb")  # closed by close()
        self._read.seek(offset)
        row: dict[str, Any] = json.loads(self._read.readline())
        return row

    def close(self) -> None:
        for f in (self._append, self._read):
            if f is not None:
                f.close()
        self._append = self._read = None


def _still_valid(row: Mapping[str, Any], source: FolderSource, write_root: Path, cache: dict[str, str | None]) -> bool:
    """A journal row counts as done only if its source and its output still match their digests."""
    key = row["key"]
    if key not in cache:
        try:
            cache[key] = file_digest(source.path(key).read_bytes())
        except OSError:
            cache[key] = None
    if row.get("source_digest") is not None and cache[key] != row["source_digest"]:
        return False
    if row["status"] != "ok":
        return True
    try:
        return bool(file_digest((write_root / row["output_path"]).read_bytes()) == row["output_digest"])
    except OSError:
        return False


class _ShardPacker:
    """Write ok outputs into tar shards in (key, epoch) order, with fixed metadata so bytes are stable."""

    def __init__(self, staging: Path, out: Path, options: RunOptions) -> None:
        self.staging, self.options = staging, options
        self.dir = out / "shards"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = self._size = 0

    def add(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Pack one ok output; return its row as the ledger keeps it, pointing into the shard."""
        options = self.options
        if self._tar is None or self._count >= options.shard_max_count or self._size >= options.shard_max_bytes:
            self.close()
            self._tmp = self.dir / f".shard-{len(self.shards):06d}.tar.tmp"
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)
            self._count = self._size = 0
        key, epoch = row["key"], row["epoch"]
        base = wds_key(key, epoch)
        where = f"shards/shard-{len(self.shards):06d}.tar#"
        image = (self.staging / row["output_path"]).read_bytes()
        ext = Path(key).suffix.lower().lstrip(".").replace("jpeg", "jpg") if epoch == ORIGINAL_EPOCH else options.image_format
        targets = json.loads(row["targets"] or "null")
        mask = targets.get("mask") if targets else None
        # The sample's JSON member names its mask by member name, the ledger by shard and member.
        meta = {"key": key, "epoch": epoch, "seed": row["seed"],
                "targets": {**targets, "mask": f"{base}.mask.png"} if mask else targets}
        self._add(f"{base}.{ext}", image)
        self._add(f"{base}.json", canonical_json(meta))
        if mask:
            self._add(f"{base}.mask.png", (self.staging / mask).read_bytes())
            targets = {**targets, "mask": f"{where}{base}.mask.png"}
        self._size += len(image)
        self._count += 1
        return {
            **row,
            "output_path": f"{where}{base}.{ext}",
            "targets": canonical_json(targets).decode() if targets is not None else None,
        }

    def _add(self, name: str, data: bytes) -> None:
        assert self._tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        if self._tar is None or self._tmp is None:
            return
        self._tar.close()
        final = self.dir / self._tmp.name.removeprefix(".").removesuffix(".tmp")
        os.replace(self._tmp, final)
        self.shards.append({"name": f"shards/{final.name}", "samples": self._count, "bytes": final.stat().st_size,
                            "sha256": file_digest(final.read_bytes())})
        self._tar = self._tmp = None


class _Summary:
    """Counts, quarantined outputs and the source digest, gathered from rows in (key, epoch) order."""

    def __init__(self) -> None:
        self.outputs = self.ok = 0
        self.quarantined: list[dict[str, Any]] = []
        self._sources = SourcesDigest()
        self._key: str | None = None
        self._key_digests: set[str] = set()

    def add(self, row: Mapping[str, Any]) -> None:
        self.outputs += 1
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.quarantined.append({"key": row["key"], "epoch": row["epoch"], "error": row["error"]})
        if row["key"] != self._key:
            self._flush_key()
            self._key = row["key"]
        if row["source_digest"]:
            self._key_digests.add(row["source_digest"])

    def _flush_key(self) -> None:
        if self._key is not None:
            for digest in sorted(self._key_digests):
                self._sources.add(self._key, digest)
        self._key_digests = set()

    def sources_digest(self) -> str:
        self._flush_key()
        self._key = None
        return self._sources.hexdigest()

    def counts(self) -> dict[str, int]:
        return {
            "outputs": self.outputs,
            "ok": self.ok,
            "quarantined": len(self.quarantined),
            "quarantined_keys": len({q["key"] for q in self.quarantined}),
        }


def materialize(
    pipeline: Pipeline,
    source: str | Path,
    out: str | Path,
    *,
    options: RunOptions | None = None,
    annotations: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Materialise ``options.copies`` augmented copies of every image under ``source`` into ``out``.

    Args:
        pipeline: the compiled pipeline.
        source: folder of images; keys are paths relative to it.
        out: output folder: new, empty, or one made earlier by the same pipeline, seed, options and
            annotations (then the run resumes and only redoes what is missing or no longer verifies).
        options: copies, workers, format, ... (:class:`RunOptions`).
        annotations: optional CSV/JSONL manifest of labels, boxes, keypoints and masks.
        progress: called with (outputs done, outputs total) as work completes.
        command: the command line to record in the manifest.

    Returns:
        :class:`RunResult`; ``exit_code`` is 0, or :data:`EXIT_QUARANTINED` if samples were quarantined.

    Raises:
        FingerprintConflict: ``out`` holds another pipeline version, seed, options or annotations.
        OutputBusy: another run is writing into ``out`` right now.
        SourceError: the source folder or annotations cannot be read as a whole.
        WorkerError: a worker process died; what finished is kept for a rerun to resume.
    """
    options = options or RunOptions()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    src = FolderSource(Path(source).resolve())
    out = Path(out).resolve()
    if out == src.root or src.root in out.parents:
        raise SourceError(
            f"--out {str(out)!r} is inside --source {str(src.root)!r}: a later run would read the outputs "
            "as inputs. Choose an --out outside the source folder."
        )
    targets = pipeline.resolved_targets
    ann = load_annotations(Path(annotations), label_fields=label_fields(targets)) if annotations else {}
    _check_annotations_fit(ann, targets)
    keys = src.keys()
    if not keys and not ann:
        raise SourceError(f"no images found under {str(src.root)!r} (extensions: .jpg .jpeg .png .bmp .tif .tiff .webp .gif)")
    ann_digest = file_digest(Path(annotations).read_bytes()) if annotations else None
    identity = _identity(pipeline, options, ann_digest)
    _claim_folder(out, identity)
    state = out / STATE_DIR
    with _locked(state):
        _claim_folder(out, identity)  # again, under the lock: a run that claimed it at the same time
        # A folder is finished only while it has a manifest: a rerun that is stopped half-way (say,
        # while re-packing shards) must not leave the previous manifest describing a changed folder.
        (out / "manifest.json").unlink(missing_ok=True)
        write_root = state / "staging" if options.format == "webdataset" else out
        removed = _clean_temporaries(out)
        if removed:
            log.info("removed %d temporary files left by an interrupted run", removed)

        epochs = tuple(range(options.copies))
        wanted_epochs = ((ORIGINAL_EPOCH,) if options.include_original else ()) + epochs
        n_expected = len(keys) * len(wanted_epochs)
        key_set, epoch_set = set(keys), set(wanted_epochs)
        journal = _Journal(state / "journal.jsonl")
        digest_cache: dict[str, str | None] = {}
        # (key, epoch) -> journal offset of its row, for every output that is complete and verified.
        done: dict[tuple[str, int], int] = {}
        try:
            previous = journal.open()
            for pair, offset in previous.items():
                if pair[0] in key_set and pair[1] in epoch_set and _still_valid(journal.row(offset), src, write_root, digest_cache):
                    done[pair] = offset
            reused = len(done)
            if previous:
                log.info("resuming: %d of %d outputs already complete and verified", reused, n_expected)
            del previous, digest_cache

            def tasks() -> Iterator[_Task]:
                for key in keys:
                    todo = tuple(e for e in epochs if (key, e) not in done)
                    original = options.include_original and (key, ORIGINAL_EPOCH) not in done
                    if todo or original:
                        yield _Task(key, todo, original, ann.get(key))

            job = _Job(pipeline, str(src.root), str(write_root), options)
            n_done = len(done)
            for rows in _execute(job, tasks()):
                for row in rows:
                    done[(row["key"], row["epoch"])] = journal.append(row)
                journal.flush()
                n_done += len(rows)
                if progress is not None:
                    progress(n_done, n_expected)

            # Manifest keys that name no image file: nothing can be made from them, and nothing is dropped silently.
            for key in sorted(set(ann) - key_set):
                for e in wanted_epochs:
                    seed = None if e == ORIGINAL_EPOCH else f"{pipeline.sample_seed(key=key, epoch=e):032x}"
                    done[(key, e)] = journal.append(
                        _row(key, e, seed, status="quarantined", error="missing-image: listed in the annotations but no such file")
                    )

            header = {
                "kind": "offline",
                "fingerprint": pipeline.fingerprint,
                "seed": pipeline.seed,
                "resolved_spec": pipeline.resolved_spec,
                "env": EnvStamp.current().to_dict(),
                "options": options.identity(),
            }
            summary = _Summary()
            packer = _ShardPacker(write_root, out, options) if options.format == "webdataset" else None
            # Rows stream from the journal in (key, epoch) order into the ledger (and the shards).
            with LedgerWriter(out / "ledger.parquet", header) as ledger:
                for pair in sorted(done):
                    row = journal.row(done[pair])
                    summary.add(row)
                    # The ledger points into the shards; the journal keeps the staging paths resume needs.
                    ledger.write(packer.add(row) if packer is not None and row["status"] == "ok" else row)
            if packer is not None:
                packer.close()
        finally:
            journal.close()
        quarantined, counts = summary.quarantined, summary.counts()
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "augledger": __version__,
            "fingerprint": pipeline.fingerprint,
            "seed": pipeline.seed,
            "name": pipeline.name,
            "resolved_spec": pipeline.resolved_spec,
            "env": header["env"],
            "options": options.identity(),
            "source": {
                "root": str(src.root),
                "images": len(keys),
                "digest": summary.sources_digest(),
                "annotations": str(Path(annotations).resolve()) if annotations else None,
                "annotations_digest": ann_digest,
            },
            "counts": counts,
            "quarantined": quarantined,
            "ledger": "ledger.parquet",
            "shards": packer.shards if packer is not None else [],
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3),
            "command": list(command) if command is not None else sys.argv,
            "workers": options.workers,
        }
        _atomic_write(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
        if options.format == "webdataset" and (state / "staging").exists():
            shutil.rmtree(state / "staging")
            journal.path.unlink()  # the shards are the outputs now; a rerun rebuilds from scratch
        log.info(
            "run done: %d outputs, %d quarantined, %.1fs", counts["ok"], len(quarantined), manifest["seconds"]
        )
        return RunResult(out, manifest, quarantined, reused=reused)


@contextmanager
def _locked(state: Path) -> Iterator[None]:
    """Hold ``.augledger/lock`` for the run: a second run into the same folder fails at once."""
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
                f"another augledger run is writing into {str(state.parent)!r} right now; wait for it to finish "
                "(or stop it), then run again to resume"
            ) from None
        yield




def label_fields(targets: Mapping[str, Any]) -> tuple[str, ...]:
    """The label fields the spec's bbox and keypoint targets declare, in order, without repeats."""
    names = [*(targets["bboxes"] or {}).get("label_fields", ()), *(targets["keypoints"] or {}).get("label_fields", ())]
    return tuple(dict.fromkeys(names))


def _check_annotations_fit(ann: Mapping[str, Annotation], targets: Mapping[str, Any]) -> None:
    for key, a in ann.items():
        for kind in ("bboxes", "keypoints"):
            if getattr(a, kind) and not targets.get(kind):
                raise SourceError(
                    f"annotations for {key!r} carry {kind}, but the spec declares no targets.{kind}; "
                    f"declare it in the spec (format and label_fields) so they are transformed with the image"
                )
        if a.mask and not targets.get("mask"):
            raise SourceError(f"annotations for {key!r} name a mask, but the spec does not set targets.mask: true")


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of a finished run (``out/manifest.json``).

    Raises:
        LedgerError: there is none (the run never finished, or ``out`` is not an output folder).
    """
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise LedgerError(
            f"{str(out)!r} has no manifest.json: not an augledger output folder, or its run did not finish "
            "(run the same `augledger run` command again to resume it)"
        )
    data: dict[str, Any] = json.loads(path.read_text())
    return data
