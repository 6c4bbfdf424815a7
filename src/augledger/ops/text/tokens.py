"""Tokens, draws and edits: the three primitives every text op is built from.

* **Tokens.** :func:`tokenize` splits text with the regular expression ``\\w+|[^\\w\\s]+|\\s+``
  (Python's ``re`` on ``str``, so Unicode-aware: ``\\w`` is any letter, digit or underscore of any
  script, per the Unicode database of the running Python). Every character matches exactly one
  of the three alternatives, so the tokens concatenate back to the text byte for byte; only
  ``\\w+`` tokens are *words*. Whitespace (newlines included) and punctuation are never dropped.
* **Draws.** Ops draw only from the sample's ``random.Random`` (seeded with the sample's 128-bit
  seed by :class:`~augledger.seeding.SampleGenerators`), and only through its ``random()`` method,
  whose stream Python guarantees across versions for a given seed. Integers are derived from it
  here (:func:`below`, :func:`pick`), not with ``randrange``/``sample``, whose algorithms may change.
* **Edits.** What an op did is a list of ``[start, old, new]`` edits: at code point ``start`` of the
  op's input, the substring ``old`` becomes ``new``. Edits are sorted and do not overlap.
  :func:`splice` applies them and checks each ``old`` is really there, so a record replays from its
  params alone, independent of the tokenizer, the tables and the random streams of a later release.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from augledger.errors import ReplayMismatch

__all__ = ["TOKEN_PATTERN", "Edit", "Word", "below", "pick", "splice", "tokenize", "words"]

#: The tokenizer: words, runs of other non-space characters, runs of whitespace.
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]+|\s+")
_WORD = re.compile(r"\w+")

#: ``[start, old, new]``: replace ``old`` at code point ``start`` of the input by ``new``.
Edit = list[Any]


class Word(NamedTuple):
    """A word token: its number among the words, its code point span and its text."""

    number: int
    start: int
    end: int
    text: str


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``; ``"".join(tokenize(text)) == text`` always."""
    return TOKEN_PATTERN.findall(text)


def words(text: str) -> list[Word]:
    """The word tokens of ``text`` (``\\w+`` runs) with their spans, in order."""
    return [Word(i, m.start(), m.end(), m.group()) for i, m in enumerate(_WORD.finditer(text))]


def below(rng: random.Random, n: int) -> int:
    """A draw in ``[0, n)`` from one ``random()`` call (``n`` is small: the bias is below 2**-40)."""
    return min(int(rng.random() * n), n - 1)


def pick(rng: random.Random, items: Sequence[Any], k: int) -> list[Any]:
    """``k`` distinct items drawn uniformly (a partial Fisher-Yates shuffle), in draw order."""
    pool = list(items)
    k = min(k, len(pool))
    for i in range(k):
        j = i + below(rng, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def splice(text: str, edits: Sequence[Sequence[Any]], *, op: str = "op") -> str:
    """Apply ``[start, old, new]`` edits (sorted, non-overlapping) to ``text``.

    Raises:
        ReplayMismatch: an edit is malformed, out of order, or its ``old`` is not at ``start``
            (the record was made from another input), naming the op and the edit.
    """
    parts: list[str] = []
    pos = 0
    for n, edit in enumerate(edits):
        if (not isinstance(edit, (list, tuple)) or len(edit) != 3 or isinstance(edit[0], bool)
                or not isinstance(edit[0], int) or not isinstance(edit[1], str) or not isinstance(edit[2], str)):
            raise ReplayMismatch(f"{op}: edit {n} must be [start, old, new] (int, str, str); got {edit!r}")
        start, old, new = edit
        if start < pos:
            raise ReplayMismatch(f"{op}: edit {n} starts at {start}, inside or before the previous edit (ends at {pos})")
        if text[start : start + len(old)] != old:
            raise ReplayMismatch(
                f"{op}: edit {n} expects {old!r} at {start} but the text has {text[start : start + len(old)]!r}; "
                "the record was made from another input"
            )
        parts += [text[pos:start], new]
        pos = start + len(old)
    parts.append(text[pos:])
    return "".join(parts)
