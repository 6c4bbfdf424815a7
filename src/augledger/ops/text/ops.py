"""The text ops: what each one may change, how it draws, and the edits it records.

Every op is a sampler ``(text, params, rng) -> edits`` (see :mod:`augledger.ops.text.tokens`); the
augmented text is ``splice(text, edits)``, and the record's params are ``{"edits": edits}``. Seeded
apply and replay from a record therefore share one code path: the splice.

Word ops pick how many words to change as ``int(aug_p * candidates)`` clamped to
``[min_changes, max_changes]`` (and to the number of candidates), then draw that many candidates
without replacement. *Candidates* are the words the op can change (a typo needs a letter the
keyboard table knows; a synonym needs an entry in the table).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from augledger.ops.text.tables import KEYBOARD_NEIGHBOURS, OCR_CONFUSIONS
from augledger.ops.text.tokens import Edit, Word, below, words

__all__ = ["CASE_MODES", "TEXT_OPS", "TextOp", "count_changes"]

Sampler = Callable[[str, Mapping[str, Any], random.Random], list[Edit]]

_SELECTION: dict[str, Any] = {"aug_p": 0.1, "min_changes": 1, "max_changes": 10}


@dataclass(frozen=True)
class TextOp:
    """One op: its name, defaults (every param has one unless listed in ``required``), sampler and docs."""

    name: str
    doc: str
    defaults: dict[str, Any]
    sample: Sampler
    example: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()


def count_changes(params: Mapping[str, Any], candidates: int) -> int:
    """How many of ``candidates`` words to change: ``int(aug_p * candidates)`` clamped to the limits."""
    n = max(params["min_changes"], min(params["max_changes"], int(params["aug_p"] * candidates)))
    return int(min(n, candidates))


def _draw_order(rng: random.Random, items: Sequence[Any]) -> Iterator[Any]:
    """``items`` in a uniformly random order, lazily (one ``random()`` per item taken)."""
    pool = list(items)
    for i in range(len(pool)):
        j = i + below(rng, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
        yield pool[i]


def _chosen(rng: random.Random, params: Mapping[str, Any], candidates: Sequence[Word]) -> list[Word]:
    n = count_changes(params, len(candidates))
    order = _draw_order(rng, candidates)
    return sorted((next(order) for _ in range(n)), key=lambda w: w.start)


def _word_edits(rng: random.Random, params: Mapping[str, Any], candidates: Sequence[Word],
                change: Callable[[Word], str | None]) -> list[Edit]:
    """Edits replacing each chosen word by ``change(word)`` (``None`` or the same text: left alone)."""
    edits: list[Edit] = []
    for w in _chosen(rng, params, candidates):
        new = change(w)
        if new is not None and new != w.text:
            edits.append([w.start, w.text, new])
    return edits


# -- word order and presence ------------------------------------------------------------------------

def _swap(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    ws = words(text)
    n = count_changes(params, len(ws) // 2)
    used: set[int] = set()
    pairs: list[int] = []
    for i in _draw_order(rng, range(len(ws) - 1)):
        if len(pairs) == n:
            break
        if i in used or i + 1 in used:
            continue
        used |= {i, i + 1}
        pairs.append(i)
    edits: list[Edit] = []
    for i in sorted(pairs):
        a, b = ws[i], ws[i + 1]
        edits.append([a.start, text[a.start : b.end], b.text + text[a.end : b.start] + a.text])
    return edits


def _blank_run(text: str, start: int, step: int) -> int:
    """The end (step 1) or start (step -1) of the run of spaces and tabs beside ``start``."""
    pos = start
    while 0 <= (pos if step > 0 else pos - 1) < len(text) and text[pos if step > 0 else pos - 1] in " \t":
        pos += step
    return pos


def _delete(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    ws = words(text)
    if len(ws) < 2:
        return []
    spans: list[list[int]] = []
    for w in _chosen(rng, {**params, "max_changes": min(params["max_changes"], len(ws) - 1)}, ws):
        after = _blank_run(text, w.end, 1)
        start, end = (w.start, after) if after > w.end else (_blank_run(text, w.start, -1), w.end)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)  # two neighbours share the blank between them
        else:
            spans.append([start, end])
    return [[s, text[s:e], ""] for s, e in spans]


def _duplicate(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    return [[w.end, "", " " + w.text] for w in _chosen(rng, params, words(text))]


def _punctuate(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    marks = params["marks"]
    return [[w.start, "", marks[below(rng, len(marks))] + " "] for w in _chosen(rng, params, words(text))]


# -- characters ---------------------------------------------------------------------------------------

def _typo(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    def typo_positions(w: Word) -> list[int]:
        return [i for i, c in enumerate(w.text) if c.lower() in KEYBOARD_NEIGHBOURS]

    candidates = [w for w in words(text) if len(w.text) >= params["min_word_length"] and typo_positions(w)]

    def change(w: Word) -> str:
        chars = list(w.text)
        positions = typo_positions(w)
        order = _draw_order(rng, positions)
        for _ in range(min(params["chars_per_word"], len(positions))):
            i = next(order)
            options = KEYBOARD_NEIGHBOURS[chars[i].lower()]
            new = options[below(rng, len(options))]
            chars[i] = new.upper() if chars[i].isupper() else new
        return "".join(chars)

    return _word_edits(rng, params, candidates, change)


_OCR_ANY = re.compile("|".join(re.escape(k) for k in OCR_CONFUSIONS))


def _ocr_matches(word: str) -> list[tuple[int, str]]:
    return [(i, src) for i in range(len(word)) for src in OCR_CONFUSIONS if word.startswith(src, i)]


def _ocr(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    candidates = [w for w in words(text) if _OCR_ANY.search(w.text)]

    def change(w: Word) -> str:
        taken: list[tuple[int, str, str]] = []
        for i, src in _draw_order(rng, _ocr_matches(w.text)):
            if len(taken) == params["chars_per_word"]:
                break
            if any(i < j + len(s) and j < i + len(src) for j, s, _ in taken):
                continue  # overlaps a confusion already made in this word
            options = OCR_CONFUSIONS[src]
            taken.append((i, src, options[below(rng, len(options))]))
        out, pos = [], 0
        for i, src, new in sorted(taken):
            out += [w.text[pos:i], new]
            pos = i + len(src)
        return "".join(out) + w.text[pos:]

    return _word_edits(rng, params, candidates, change)


CASE_MODES: dict[str, Callable[[str], str]] = {
    "upper": str.upper, "lower": str.lower, "title": str.capitalize, "swapcase": str.swapcase,
}


def _case(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    modes = [CASE_MODES[m] for m in params["modes"]]
    candidates = [w for w in words(text) if any(f(w.text) != w.text for f in modes)]

    def change(w: Word) -> str:
        changing = [f for f in modes if f(w.text) != w.text]
        return changing[below(rng, len(changing))](w.text)

    return _word_edits(rng, params, candidates, change)


def _match_case(word: str, new: str) -> str:
    if len(word) > 1 and word.isupper():
        return new.upper()
    if word[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _synonym(text: str, params: Mapping[str, Any], rng: random.Random) -> list[Edit]:
    table: Mapping[str, Sequence[str]] = params["synonyms"]
    candidates = [w for w in words(text) if w.text.lower() in table]

    def change(w: Word) -> str:
        options = table[w.text.lower()]
        return _match_case(w.text, options[below(rng, len(options))])

    return _word_edits(rng, params, candidates, change)


TEXT_OPS: dict[str, TextOp] = {op.name: op for op in (
    TextOp("WordSwap", "Swap adjacent words (the text between them stays in place).", dict(_SELECTION), _swap,
           {"aug_p": 0.3}),
    TextOp("WordDeletion", "Delete words with the spaces or tabs after them (before them at a line's end); "
           "one word always remains.", dict(_SELECTION), _delete, {"aug_p": 0.2}),
    TextOp("WordDuplication", "Repeat words (``word`` becomes ``word word``).", dict(_SELECTION), _duplicate,
           {"aug_p": 0.2}),
    TextOp("KeyboardTypo", "Replace letters by a neighbouring key on a QWERTY keyboard (case kept).",
           {**_SELECTION, "chars_per_word": 1, "min_word_length": 3}, _typo, {"aug_p": 0.3}),
    TextOp("OcrNoise", "OCR confusions inside words (0/O, 1/l/I, rn/m, 5/S, 8/B, cl/d, vv/w, ...).",
           {**_SELECTION, "chars_per_word": 1}, _ocr, {"aug_p": 0.3}),
    TextOp("CaseNoise", "Change the case of words (one of ``modes`` that changes the word).",
           {**_SELECTION, "modes": ["upper", "lower", "title", "swapcase"]}, _case, {"aug_p": 0.3}),
    TextOp("PunctuationInsertion", "Insert a punctuation mark and a space before words (AEDA).",
           {**_SELECTION, "marks": [".", ",", "!", "?", ";", ":"]}, _punctuate, {"aug_p": 0.2}),
    TextOp("SynonymReplacement", "Replace words found in the spec's own ``synonyms`` table (matched "
           "ignoring case; the replacement takes the word's capitalisation).",
           dict(_SELECTION), _synonym,
           {"aug_p": 0.5, "synonyms": {"quick": ["fast", "swift"], "dog": ["hound"]}}, ("synonyms",)),
)}
