"""Group-aware splits: whole groups (a patient, a session, a source video) go to one split, by a stable hash.

A random split by *image* leaks: two frames of one video, or two scans of one patient, land on both
sides and the evaluation measures memory, not generalisation. Here every source key belongs to a
group, read from the key with a regular expression (``--group-by``) or from a CSV file of
``key,group`` rows (``--groups``), and each *group* is assigned a split:

* ``route(group, salt)`` (:func:`augledger.variants.route`: the first 8 bytes of SHA-256 over
  canonical JSON ``[salt, group]``, as a fraction of 2**64) is compared with the cumulative
  fractions, taken in :data:`~augledger.spec.SPLITS` order (``train``, ``val``, ``test``,
  ``predict``) whatever order ``--fractions`` lists them in.
* So a group's split depends only on the group's name, the salt and the fractions: not on
  ``PYTHONHASHSEED``, the order keys are listed in, nor on which other groups exist. Adding data
  never moves an old group to another split.

The result is written as ``splits.csv`` (``key,group,split``, sorted by key), which
``augledger run --split-file`` reads to augment only the keys marked ``train``
(:class:`SplitSelection`); the file's SHA-256 becomes part of the dataset's identity.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.errors import SourceError, SpecError
from augledger.spec import SPLITS
from augledger.variants import route

__all__ = [
    "SplitSelection", "assign_splits", "groups_from_file", "groups_from_regex", "load_split_selection",
    "parse_fractions", "read_split_file", "split_of", "split_source", "write_split_file",
]

log = logging.getLogger(__name__)

#: How far the fractions' sum may be from 1.
FRACTION_TOLERANCE = 1e-9


def _shown(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(repr(i) for i in items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def parse_fractions(text: str | Mapping[str, float]) -> dict[str, float]:
    """Parse ``train=0.8,val=0.1,test=0.1`` (or check a mapping) into fractions in :data:`SPLITS` order.

    Raises:
        SpecError: an unknown split name, a name given twice, no ``train``, a value that is not a
            number in [0, 1], or fractions that do not sum to 1 (within 1e-9).

    Example:
        >>> parse_fractions("val=0.2,train=0.8")
        {'train': 0.8, 'val': 0.2}
    """
    where = "--fractions"
    given: dict[str, float] = {}
    if isinstance(text, str):
        for part in (p.strip() for p in text.split(",")):
            name, eq, value = part.partition("=")
            name = name.strip()
            if not eq or not name:
                raise SpecError(f"each item must be NAME=FRACTION, e.g. train=0.8,val=0.1,test=0.1; got {part!r}",
                                location=where)
            try:
                number = float(value)
            except ValueError:
                raise SpecError(f"the fraction of {name!r} must be a number, e.g. {name}=0.1; got {value!r}",
                                location=where) from None
            if name in given:
                raise SpecError(f"split {name!r} is given twice; give each split once", location=where)
            given[name] = number
    else:
        given = dict(text)
    unknown = sorted(set(given) - set(SPLITS))
    if unknown:
        raise SpecError(f"unknown split name(s) {_shown(unknown)}; use {', '.join(SPLITS)}", location=where)
    if "train" not in given:
        raise SpecError(f"train is missing; got {', '.join(given) or 'nothing'}. Add e.g. train=0.8", location=where)
    for name, share in given.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) or not 0 <= share <= 1:
            raise SpecError(f"the fraction of {name!r} must be a number in [0, 1]; got {share!r}", location=where)
    total = math.fsum(given.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise SpecError(f"the fractions must sum to 1; they sum to {total:.12g}. Adjust them, e.g. "
                        "train=0.8,val=0.1,test=0.1", location=where)
    return {name: float(given[name]) for name in SPLITS if name in given}


def split_of(group: str, fractions: Mapping[str, float], *, salt: str = "") -> str:
    """The split a group goes to: ``route(group, salt)`` against the cumulative fractions (in
    :data:`SPLITS` order). Pass fractions from :func:`parse_fractions`.

    Example:
        >>> split_of("patient-7", {"train": 0.8, "val": 0.2}) == split_of("patient-7", {"val": 0.2, "train": 0.8})
        True
    """
    ordered = [(name, fractions[name]) for name in SPLITS if name in fractions]
    point = route(group, salt)
    edge = 0.0
    for name, share in ordered:
        edge += share
        if point < edge:
            return name
    # The fractions sum to 1 within 1e-9; a point in the last sliver of float error goes to the last split
    # that has a share.
    return next(name for name, share in reversed(ordered) if share > 0)


def groups_from_regex(keys: Iterable[str], pattern: str) -> dict[str, str]:
    """``{key: group}``: the group is what ``pattern`` captures in the key (``re.search``), from the
    named group ``group`` if there is one, else from its one capture group.

    Raises:
        SpecError: the pattern does not compile, or has no capture group (or several, none named ``group``).
        SourceError: a key the pattern does not match (naming the key and the pattern), or where it captures nothing.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise SpecError(f"{pattern!r} is not a regular expression: {exc}", location="--group-by") from None
    if "group" in regex.groupindex:
        which: int | str = "group"
    elif regex.groups == 1:
        which = 1
    else:
        raise SpecError(
            f"{pattern!r} must have one capture group, or a named group (?P<group>...), to say which part of "
            f"the key is the group; it has {regex.groups}. E.g. --group-by '^(patient[0-9]+)/'",
            location="--group-by",
        )
    out: dict[str, str] = {}
    for key in keys:
        match = regex.search(key)
        if match is None:
            raise SourceError(f"key {key!r} does not match --group-by {pattern!r}; every source key needs a group. "
                              "Widen the pattern, or give the groups as a file with --groups")
        group = match.group(which)
        if not group:
            raise SourceError(f"--group-by {pattern!r} captures nothing in key {key!r}; every key needs a non-empty group")
        out[key] = group
    return out


def groups_from_file(path: str | Path, keys: Iterable[str]) -> dict[str, str]:
    """``{key: group}`` from a CSV file with columns ``key`` and ``group``, for every key in ``keys``.

    Rows for keys that are not in ``keys`` (files not in the source) are ignored, with a log line.

    Raises:
        SourceError: the file cannot be read, lacks a column, repeats a key, has an empty group, or
            lacks a row for some source key (naming a few).
    """
    rows = _read_csv(Path(path), ("key", "group"), "groups file")
    groups: dict[str, str] = {}
    for line, row in rows:
        key, group = row["key"], row["group"]
        if not key:
            raise SourceError(f"{Path(path).name}:{line}: empty key; each row needs key and group")
        if key in groups:
            raise SourceError(f"{Path(path).name}:{line}: key {key!r} appears twice; each key has one group")
        if not group:
            raise SourceError(f"{Path(path).name}:{line}: key {key!r} has an empty group")
        groups[key] = group
    wanted = list(keys)
    missing = [k for k in wanted if k not in groups]
    if missing:
        raise SourceError(f"groups file {str(path)!r} has no row for {len(missing)} source key(s): {_shown(missing)}; "
                          "every source key needs a group")
    extra = len(set(groups) - set(wanted))
    if extra:
        log.info("groups file %s names %d key(s) that are not in the source; ignored", path, extra)
    return {k: groups[k] for k in wanted}


def assign_splits(groups: Mapping[str, str], fractions: Mapping[str, float], *, salt: str = "") -> dict[str, str]:
    """``{key: split}`` for ``{key: group}``: every key of a group gets its group's split."""
    by_group: dict[str, str] = {}
    out: dict[str, str] = {}
    for key, group in groups.items():
        if group not in by_group:
            by_group[group] = split_of(group, fractions, salt=salt)
        out[key] = by_group[group]
    return out


def split_source(
    source: str | Path, fractions: str | Mapping[str, float], *, group_by: str | None = None,
    groups_file: str | Path | None = None, salt: str = "",
) -> tuple[dict[str, str], dict[str, str]]:
    """Group and split every image of a source folder: ``({key: group}, {key: split})``.

    Exactly one of ``group_by`` (a regex over the key) and ``groups_file`` (a ``key,group`` CSV) is given.

    Raises:
        SpecError: bad fractions or pattern, or not exactly one way to find groups.
        SourceError: the source is not a folder, holds no images, or a key has no group.
    """
    from augledger.io.image import IMAGE_EXTENSIONS
    from augledger.run.sources import FolderSource

    if (group_by is None) == (groups_file is None):
        raise SpecError("give exactly one of --group-by REGEX and --groups FILE.csv", location="--group-by")
    shares = parse_fractions(fractions)
    root = Path(source)
    keys = FolderSource(root, IMAGE_EXTENSIONS).keys()
    if not keys:
        raise SourceError(f"no images found under {str(root)!r} (extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})")
    groups = groups_from_regex(keys, group_by) if group_by is not None else groups_from_file(groups_file or "", keys)
    return groups, assign_splits(groups, shares, salt=salt)


def write_split_file(path: str | Path, groups: Mapping[str, str], splits: Mapping[str, str]) -> Path:
    """Write ``key,group,split`` rows, sorted by key (code-point order), as UTF-8 CSV with ``\\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "group", "split"])
    for key in sorted(splits):
        writer.writerow([key, groups[key], splits[key]])
    path = Path(path)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def read_split_file(path: str | Path) -> dict[str, str]:
    """``{key: split}`` from a split file (``key`` and ``split`` columns; ``group`` and others are kept out).

    Raises:
        SourceError: the file is missing or unreadable, lacks the ``key`` or ``split`` column, has an
            empty key, a split name not in :data:`SPLITS`, a key twice (naming the line), or, when it
            has a ``group`` column, a group in two splits (a hand-edited file that would leak).
    """
    path = Path(path)
    out: dict[str, str] = {}
    group_split: dict[str, tuple[str, str]] = {}
    for line, row in _read_csv(path, ("key", "split"), "split file"):
        key, split = row["key"], row["split"]
        if not key:
            raise SourceError(f"{path.name}:{line}: empty key; each row needs key and split")
        if split not in SPLITS:
            raise SourceError(f"{path.name}:{line}: key {key!r} has split {split!r}; use one of {', '.join(SPLITS)}")
        if key in out:
            raise SourceError(f"{path.name}:{line}: key {key!r} appears twice; each key is in one split")
        group = row.get("group")
        if group:
            first = group_split.setdefault(group, (split, key))
            if first[0] != split:
                raise SourceError(f"{path.name}:{line}: group {group!r} is in {first[0]} (key {first[1]!r}) and in "
                                  f"{split} (key {key!r}); a group belongs to one split. Make the split file again "
                                  "with `augledger split`, or move the whole group")
        out[key] = split
    return out


def _read_csv(path: Path, columns: Sequence[str], what: str) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise SourceError(f"{what} {str(path)!r} does not exist")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            lacking = [c for c in columns if c not in header]
            if lacking:
                raise SourceError(f"{what} {str(path)!r} lacks the column(s) {', '.join(lacking)}; its header must "
                                  f"name {', '.join(columns)} (it has {', '.join(header) or 'no header'})")
            return [(i, {c: (row.get(c) or "").strip() for c in header}) for i, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{what} {str(path)!r} cannot be read: {exc}") from None


@dataclass(frozen=True)
class SplitSelection:
    """The keys a run augments, from a split file: those marked ``train``.

    ``sha256`` is the file's digest; :meth:`identity` goes into the folder identity and the manifest.
    """

    path: Path
    sha256: str
    splits: Mapping[str, str]
    split: str = "train"

    def identity(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "split": self.split}

    def select(self, keys: Sequence[str]) -> list[str]:
        """The keys (in their order) that the file marks ``train``.

        Raises:
            SourceError: a key of the source is not in the file (naming a few), or none is ``train``.
        """
        missing = [k for k in keys if k not in self.splits]
        if missing:
            raise SourceError(
                f"split file {str(self.path)!r} has no row for {len(missing)} source key(s): {_shown(missing)}. "
                "Every source key must have a split: run `augledger split` again over this source"
            )
        chosen = [k for k in keys if self.splits[k] == self.split]
        if not chosen:
            raise SourceError(f"split file {str(self.path)!r} marks none of the {len(keys)} source keys {self.split}")
        extra = len(set(self.splits) - set(keys))
        if extra:
            log.warning("split file %s names %d key(s) that are not in the source", self.path, extra)
        log.info("split file %s: augmenting %d of %d source keys (%s)", self.path, len(chosen), len(keys), self.split)
        return chosen

    def keeps(self, key: str) -> bool:
        """Whether ``key`` belongs to the run: marked ``train``, or not in the file at all."""
        return self.splits.get(key, self.split) == self.split


def load_split_selection(path: str | Path) -> SplitSelection:
    """Read a split file for ``augledger run --split-file``: its rows and its SHA-256.

    Raises:
        SourceError: see :func:`read_split_file`.
    """
    path = Path(path).resolve()
    splits = read_split_file(path)
    return SplitSelection(path, sha256_hex(path.read_bytes()), splits)
