"""Where bytes live: the ``Store`` interface and the local file system implementation.

Every file augledger reads or writes for a dataset goes through a store rooted at one folder,
addressed by relative POSIX paths (the same strings as sample keys). :class:`LocalStore` is the
only implementation today; an fsspec-backed store (S3, GCS, ...) implements the same five methods.

A store is also the security boundary: a path that is absolute, climbs out with ``..``, holds a
NUL byte, or resolves through a symlink to somewhere outside the root is refused with
:class:`~augledger.errors.UnsafePath`, so neither an annotation's ``mask`` column nor a symlink in a
source folder can make a run read (or write) outside the folders it was given.
"""

from __future__ import annotations

import builtins
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Protocol

from augledger.errors import UnsafePath

__all__ = ["TEMP_MARK", "LocalStore", "Store", "check_relative"]

log = logging.getLogger(__name__)

#: Temporary files of atomic writes are named ``.<name>.tmp-<pid>``; a crashed run may leave some.
TEMP_MARK = ".tmp-"


class Store(Protocol):
    """Files under one root, addressed by relative POSIX paths."""

    def read(self, path: str) -> bytes:
        """The file's bytes. Raises ``OSError`` (``FileNotFoundError`` if absent), :class:`UnsafePath`."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Write atomically: readers see the old file or the whole new one, never a part."""
        ...

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Every file under ``prefix``, sorted; hidden names (``.x``) are skipped."""
        ...

    def exists(self, path: str) -> bool:
        ...

    def remove(self, path: str) -> None:
        """Remove the file if it exists."""
        ...


def check_relative(path: str, *, what: str = "path") -> str:
    """Return ``path`` as a normalised relative POSIX path, or raise :class:`UnsafePath` saying why.

    Refused: empty, the root itself (``.``), absolute (``/x``, ``C:/x``, ``\\\\host``), ``..`` components, NUL
    bytes, backslashes.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"{what} must be a non-empty relative path; got {path!r}")
    if "\0" in path:
        raise UnsafePath(f"{what} {path!r} holds a NUL byte")
    if "\\" in path:
        raise UnsafePath(f"{what} {path!r} uses backslashes; write it with forward slashes")
    pure = PurePosixPath(path)
    if pure.is_absolute() or (len(path) > 2 and path[0].isalpha() and path[1] == ":" and path[2] == "/"):
        raise UnsafePath(f"{what} {path!r} is absolute; give it relative to its root folder")
    if ".." in pure.parts:
        raise UnsafePath(f"{what} {path!r} climbs out of its root folder with '..'")
    if pure.as_posix() == ".":  # the root itself: a write would put its temporary file beside the root
        raise UnsafePath(f"{what} {path!r} names the root folder itself, not a file in it")
    return pure.as_posix()


class LocalStore:
    """A folder on the local file system. Paths are checked before every access (see the module doc)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._real_root = os.path.realpath(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, path: str) -> Path:
        """The local path of ``path``, after checking that it stays inside the root.

        Raises:
            UnsafePath: the path is unsafe as written, or a symlink on it leads outside the root.
        """
        rel = check_relative(path)
        full = os.path.join(self.root, rel)
        if not self._inside(os.path.realpath(full)):
            # No absolute path in the message: it ends up in ledgers, which must not depend on the machine.
            raise UnsafePath(f"{rel!r} leads outside its folder (through a symlink)")
        return Path(full)

    def _inside(self, real: str) -> bool:
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def read(self, path: str) -> bytes:
        with open(self.path(path), "rb") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}")
        tmp.unlink(missing_ok=True)  # a leftover of a killed process with the same pid
        # O_EXCL and O_NOFOLLOW: a symlink planted at the temporary name is not followed out of the root.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def exists(self, path: str) -> bool:
        try:
            return self.path(path).is_file()
        except UnsafePath:
            return False

    def remove(self, path: str) -> None:
        self.path(path).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Every file under ``prefix``, sorted by code point; symlinked folders are followed once each.

        Raises:
            UnsafePath: an entry (a file or a folder symlink) resolves outside the root; every such
                entry is named, so one error lists all of them.
        """
        start = self.path(prefix) if prefix else self.root
        found: builtins.list[str] = []
        escaping: builtins.list[str] = []
        links: builtins.list[str] = []
        seen = {os.path.realpath(start)}
        self._walk(str(start), seen, found, escaping, links)
        # Symlinked folders come after the whole real tree, so a real folder is never read under an
        # alias's name; each real folder is read once (a link back up the tree would repeat every file).
        while links:
            link = links.pop(0)
            real = os.path.realpath(link)
            if real in seen:
                log.warning("skipping %s: it leads to a folder already read (%s)", link, real)
                continue
            seen.add(real)
            self._walk(link, seen, found, escaping, links)
        if escaping:
            shown = "; ".join(escaping[:5]) + (f"; and {len(escaping) - 5} more" if len(escaping) > 5 else "")
            raise UnsafePath(
                f"{len(escaping)} symlink(s) under {str(self.root)!r} lead outside it ({shown}); a run reads only "
                "inside its source folder: replace each link with the data it points to, or remove it"
            )
        return sorted(found)

    def _walk(
        self, folder: str, seen: set[str], found: builtins.list[str], escaping: builtins.list[str],
        links: builtins.list[str],
    ) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise UnsafePath(f"folder {os.path.relpath(folder, self.root)!r} cannot be listed: {exc.strerror or exc}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not self._inside(real):
                    escaping.append(f"{os.path.relpath(entry.path, self.root)} -> {real}")
                    continue
                if entry.is_dir():
                    links.append(entry.path)
                    continue
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in seen:
                    seen.add(real)
                    self._walk(entry.path, seen, found, escaping, links)
            elif entry.is_file():
                found.append(Path(os.path.relpath(entry.path, self.root)).as_posix())
