"""Per-process part files, merged into one sorted ledger: how many writers make one ledger.

Each process (the main one, every DataLoader worker, every rank on a shared file system, a
future engine's remote workers) appends JSON lines to its own ``part-<host>-<pid>.jsonl`` and
flushes after each batch, so rows survive processes that leave through ``os._exit`` and ones
killed at shutdown. :meth:`PartFiles.merge` reads every part, keeps the first row of each
``(key, epoch)`` and writes them sorted, so the merged ledger does not depend on how many
processes wrote or in which order.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from augledger.ledger.parquet import write_ledger
from augledger.ledger.row import LedgerRow

__all__ = ["PartFiles"]

log = logging.getLogger(__name__)

_PART_GLOB = "part-*.jsonl"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "host"


def host_name() -> str:
    """This machine's name, made safe for file names."""
    return _safe_name(socket.gethostname())


class PartFiles:
    """Append rows to this process's part file in ``directory``; merge every part into a ledger.

    Picklable: a copy sent to another process (a forked or spawned worker) opens its own part
    file on its first write, never the parent's handle.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._fh: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])  # type: ignore[misc]

    def append(self, rows: Sequence[LedgerRow]) -> None:
        """Append rows to this process's part file and flush them to the OS at once."""
        if not rows:
            return
        text = "".join(json.dumps(row.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n" for row in rows)
        with self._lock:
            if self._pid != os.getpid():
                # A forked worker inherits the parent's handle: never share it, open this process's own.
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"part-{host_name()}-{os.getpid()}.jsonl"
                cut = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
                self._fh = path.open("a", encoding="utf-8")
                if cut:  # an earlier process with this pid was killed mid-line: start on a line of our own
                    self._fh.write("\n")
                self._pid = os.getpid()
            self._fh.write(text)
            self._fh.flush()

    def close(self) -> None:
        """Close this process's part file (rows are already flushed; this releases the handle)."""
        with self._lock:
            if self._fh is not None and self._pid == os.getpid():
                self._fh.close()
            self._fh, self._pid = None, -1

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob(_PART_GLOB))

    def rows(self) -> Iterator[LedgerRow]:
        """Every complete row of every part (a line cut short by a killed process is skipped, with a warning)."""
        for part in self.parts():
            with part.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    try:
                        data = json.loads(line) if line.endswith("\n") else None
                    except ValueError:
                        data = None
                    if data is None:
                        if line.strip():
                            log.warning("skipping the unfinished line %d of ledger part %s", number, part)
                        continue
                    yield LedgerRow.from_dict(data)

    def merge(self, path: str | Path, header: Mapping[str, Any]) -> Path:
        """Write every part's rows as one ledger at ``path``, sorted by (key, epoch), first of each pair kept."""
        self.close()
        out = write_ledger(self.rows(), path, header)
        log.info("merged %d ledger part(s) from %s into %s", len(self.parts()), self.directory, out)
        return out
