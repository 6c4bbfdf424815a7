"""Engines: where the per-sample work of a run executes.

An :class:`Engine` takes a :class:`~augledger.run.work.SampleJob` and the tasks still to do and
yields ledger rows as outputs become complete (files written), in any order. It shares nothing
between tasks, so the outputs do not depend on the engine or its worker count; the caller commits
rows (journal, ledger, manifest). Two engines ship:

* :class:`InProcessEngine` works in the calling process (OpenCV keeps its own threads) and writes
  and hashes files on a background thread, one chunk behind. Measured here, a lone worker process
  (one OpenCV thread, results shipped back) ran 10-20% slower than this.
* :class:`ProcessPoolEngine` forks N worker processes, one OpenCV thread each, which read, decode,
  augment, encode and write their own samples, with a bounded number of chunks in flight.

Process tuning lives here too: glibc's ``malloc`` thresholds (both engines), OpenCV's thread
count and dying with the main process (the pool's workers). Both engines stop between samples when
a :class:`~augledger.run.stopping.StopSignals` says so, hand over every row whose files are
complete, then raise :class:`~augledger.errors.Interrupted`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from augledger.errors import WorkerError
from augledger.io.store import LocalStore, Store
from augledger.ledger.row import LedgerRow
from augledger.run.stopping import StopSignals, ignore_stop_signals
from augledger.run.work import Output, SampleJob, Task, finish_rows, write_outputs

__all__ = ["Engine", "InProcessEngine", "ProcessPoolEngine", "engine_for"]

log = logging.getLogger(__name__)


class Engine(Protocol):
    """Executes per-sample tasks and yields the rows of outputs whose files are written."""

    def execute(
        self, job: SampleJob, tasks: Iterable[Task], store: Store, stop: StopSignals | None = None
    ) -> Iterator[list[LedgerRow]]:
        """Yield rows as outputs complete, in any order.

        On ``stop``, yield the rows of the samples in hand, then raise ``Interrupted``.

        Raises:
            WorkerError: a worker process died; rows already yielded are complete.
            OSError: a file could not be written (nothing is yielded for it).
        """
        ...


def chunks(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    chunk: list[Task] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _produce(job: SampleJob, tasks: Sequence[Task], stopped: Callable[[], bool]) -> list[Output]:
    """The outputs of a chunk's tasks, stopping before the next task once ``stopped()``."""
    outputs: list[Output] = []
    for task in tasks:
        if stopped():
            break
        outputs.extend(job.produce(task))
    return outputs


class InProcessEngine:
    """Works in the calling process; files are written and hashed on a background thread.

    Writing and hashing release the GIL, so they overlap the next chunk's pixel work.
    """

    def __init__(self, chunk_size: int = 4) -> None:
        self.chunk_size = chunk_size

    def execute(
        self, job: SampleJob, tasks: Iterable[Task], store: Store, stop: StopSignals | None = None
    ) -> Iterator[list[LedgerRow]]:
        stopped: Callable[[], bool] = (lambda: False) if stop is None else (lambda: stop.stopped)
        preload_ledger_backend()
        tune_malloc()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="augledger-writer") as writer:
                # One chunk behind: a chunk's files are written while the next one is worked on.
                previous: tuple[list[LedgerRow], Future[None]] | None = None
                for chunk in chunks(tasks, self.chunk_size):
                    outputs = _produce(job, chunk, stopped)
                    rows = finish_rows(outputs)
                    written = writer.submit(write_outputs, outputs, store)
                    if previous is not None:
                        previous[1].result()  # a failed write raises here and ends the run
                        yield previous[0]
                    previous = rows, written
                    if stopped():
                        break
                if previous is not None:
                    previous[1].result()
                    yield previous[0]
        finally:
            tune_malloc(restore=True)
        if stop is not None:
            stop.check()


# -- worker processes ----------------------------------------------------------------------------------

_WORKER: tuple[SampleJob, Store, Any] | None = None


class SharedFlag:
    """A stop flag the main process sets and workers read: one byte of shared memory, no lock.

    Not a ``multiprocessing.Event``: its lock is taken by every reader, and a worker killed while
    reading it (the OOM killer) would leave it held, so the main process would hang on ``set``.
    """

    def __init__(self, context: Any) -> None:
        self._value = context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def _init_worker(job: SampleJob, store_root: str, stop_event: SharedFlag, parent: int) -> None:
    global _WORKER
    import cv2

    die_with_parent(parent)
    ignore_stop_signals()
    tune_malloc()
    # Shared-nothing workers: one OpenCV thread each, so N workers use N cores without oversubscription.
    cv2.setNumThreads(1)
    _WORKER = (job, LocalStore(store_root), stop_event)


def _work_chunk(tasks: list[Task]) -> list[LedgerRow]:
    assert _WORKER is not None, "worker used before _init_worker"
    job, store, stop_event = _WORKER
    outputs = _produce(job, tasks, stop_event.is_set)
    rows = finish_rows(outputs)
    write_outputs(outputs, store)
    return rows


class ProcessPoolEngine:
    """Forks ``workers`` processes that each read, augment, encode and write their own samples."""

    def __init__(self, workers: int, chunk_size: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        self.workers = workers
        self.chunk_size = chunk_size

    def execute(
        self, job: SampleJob, tasks: Iterable[Task], store: Store, stop: StopSignals | None = None
    ) -> Iterator[list[LedgerRow]]:
        import cv2

        if not isinstance(store, LocalStore):
            raise TypeError("ProcessPoolEngine writes through a LocalStore (workers open their own)")
        # With OpenCV's thread pool alive in the parent, forked children can hang (2 of 30 did here).
        previous_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        context = mp.get_context(method)
        stop_event = SharedFlag(context)
        # concurrent.futures rather than multiprocessing.Pool: when a worker dies (the OOM killer, a
        # crash in native code), Pool replaces it and waits forever for the chunk it held; the
        # executor reports it. (Throughput and the main process's CPU time measured the same.)
        pending = chunks(tasks, self.chunk_size)
        in_flight: set[Future[list[LedgerRow]]] = set()
        try:
            with ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker,
                initargs=(job, str(store.root), stop_event, os.getpid()),
            ) as pool:

                def submit_next() -> None:
                    chunk = next(pending, None)
                    if chunk is not None:
                        in_flight.add(pool.submit(_work_chunk, chunk))

                # Bounded work in flight, so memory stays flat however large the dataset is.
                for _ in range(self.workers * 4):
                    submit_next()
                preload_ledger_backend()  # only once the workers exist: never fork while a thread imports
                try:
                    yield from self._collect(in_flight, submit_next, stop, stop_event)
                except BaseException:
                    # Leaving the pool waits for every queued chunk; none may start writing files
                    # whose rows nobody will journal.
                    stop_event.set()
                    for future in in_flight:
                        future.cancel()
                    raise
        finally:
            cv2.setNumThreads(previous_threads)
        if stop is not None:
            stop.check()

    @staticmethod
    def _collect(
        in_flight: set[Future[list[LedgerRow]]], submit_next: Callable[[], None], stop: StopSignals | None,
        stop_event: SharedFlag,
    ) -> Iterator[list[LedgerRow]]:
        while in_flight:
            finished, _ = wait(in_flight, timeout=0.1, return_when=FIRST_COMPLETED)
            if stop is not None and stop.stopped and not stop_event.is_set():
                # Workers finish the sample in hand and return what they made; queued chunks are dropped.
                stop_event.set()
                for future in list(in_flight):
                    if future.cancel():
                        in_flight.discard(future)
            for future in finished:
                in_flight.discard(future)
                try:
                    rows = future.result()
                except BrokenProcessPool as exc:
                    if stop is not None and stop.stopped:  # SIGTERM to the whole group ended the workers too
                        stop.check()
                    raise WorkerError(
                        "a worker process died (killed, out of memory, or a crash in native code) while "
                        "augmenting; what finished is kept: run the same command again to resume"
                    ) from exc
                if not stop_event.is_set():
                    submit_next()
                yield rows


def engine_for(workers: int, chunk_size: int = 4) -> Engine:
    """:class:`InProcessEngine` for 0 or 1 workers, else :class:`ProcessPoolEngine`."""
    return InProcessEngine(chunk_size) if workers <= 1 else ProcessPoolEngine(workers, chunk_size)


# -- process tuning ----------------------------------------------------------------------------------


def tune_malloc(*, restore: bool = False) -> None:
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


def die_with_parent(parent: int) -> None:
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


def preload_ledger_backend() -> None:
    """Import the ledger writer's backend (pyarrow, ~0.3 s) on a thread while samples are processed."""
    threading.Thread(target=_import_ledger_backend, name="augledger-ledger-import", daemon=True).start()


def _import_ledger_backend() -> None:
    try:
        import pyarrow.json
        import pyarrow.parquet  # noqa: F401
    except Exception:  # pragma: no cover - the ledger writer reports a missing pyarrow itself
        log.debug("pre-importing the ledger backend failed", exc_info=True)
