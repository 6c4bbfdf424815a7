"""The run journal: one JSON line per finished output, appended as work completes, read on resume.

A row reaches the journal only after its files are complete, so a journal line is a promise that
the output exists. Only ``(key, epoch) -> byte offset`` stays in memory; rows are read back from
the file when the ledger is written, so the main process does not grow with the rows of a large
dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from augledger.ledger.row import LedgerRow

__all__ = ["Journal"]


class Journal:
    """``.augledger/journal.jsonl`` of an output folder."""

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

    def append(self, row: LedgerRow) -> int:
        assert self._append is not None, "journal not open"
        offset = self._append.tell()
        self._append.write(json.dumps(row.to_dict(), sort_keys=True).encode() + b"\n")
        return offset

    def flush(self) -> None:
        assert self._append is not None, "journal not open"
        self._append.flush()

    def row(self, offset: int) -> LedgerRow:
        self.flush()
        if self._read is None:
            self._read = open(self.path, "rb")  # closed by close()
        self._read.seek(offset)
        return LedgerRow.from_dict(json.loads(self._read.readline()))

    def close(self) -> None:
        for f in (self._append, self._read):
            if f is not None:
                f.close()
        self._append = self._read = None
