"""augledger's text ops against plain Python (and nlpaug, when importable) on the same texts.

Three implementations of each op, interleaved round by round in one process:

* **augledger**: ``Pipeline.apply`` of a one-op spec at ``p=1``: per-sample seed derivation,
  generator re-seeding, the op, its edits record.
* **plain**: the same algorithm written here without records or seeding scaffolding (a
  ``random.Random`` seeded once, words changed in place in the token list).
* **nlpaug** (benchmark only, never a dependency): its nearest equivalent, if ``import nlpaug``
  works (e.g. ``pip install --target /tmp/nlpaug_pkg nlpaug gdown`` then ``PYTHONPATH=/tmp/nlpaug_pkg``).

The report gives microseconds per text (median of rounds) and the ratios augledger/plain and
augledger/nlpaug (below 1: augledger is faster). Issue 10's goal: at least as fast as nlpaug.

Run: ``.venv/bin/python benchmarks/text.py [--texts 200] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import augledger
from augledger.ops.text.tables import KEYBOARD_NEIGHBOURS, OCR_CONFUSIONS

_WORDS = ("the river had risen overnight and by morning the lower field was a shallow lake where geese "
          "counted twelve before breakfast neither of them could say where the fence had gone modern 1985").split()
_TOKEN = re.compile(r"\w+|[^\w\s]+|\s+")


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(30, 80))) + "." for _ in range(n)]


# -- plain Python: the same algorithms, no records, one generator ---------------------------------

def _plain_words(rng: random.Random, text: str, aug_p: float, change: Callable[[str], str]) -> str:
    tokens = _TOKEN.findall(text)
    idx = [i for i, t in enumerate(tokens) if t[0].isalnum() or t[0] == "_"]
    for i in rng.sample(idx, max(1, min(10, int(aug_p * len(idx))))):
        tokens[i] = change(tokens[i])
    return "".join(tokens)


def plain_swap(rng: random.Random, text: str) -> str:
    tokens = _TOKEN.findall(text)
    idx = [i for i, t in enumerate(tokens) if t[0].isalnum()]
    for j in rng.sample(range(len(idx) - 1), max(1, min(10, int(0.1 * len(idx) // 2)))):
        a, b = idx[j], idx[j + 1]
        tokens[a], tokens[b] = tokens[b], tokens[a]
    return "".join(tokens)


def plain_typo(rng: random.Random, text: str) -> str:
    def change(word: str) -> str:
        pos = [i for i, c in enumerate(word) if c.lower() in KEYBOARD_NEIGHBOURS]
        if not pos:
            return word
        i = rng.choice(pos)
        return word[:i] + rng.choice(KEYBOARD_NEIGHBOURS[word[i].lower()]) + word[i + 1 :]
    return _plain_words(rng, text, 0.1, change)


def plain_ocr(rng: random.Random, text: str) -> str:
    def change(word: str) -> str:
        hits = [(i, s) for i in range(len(word)) for s in OCR_CONFUSIONS if word.startswith(s, i)]
        if not hits:
            return word
        i, s = rng.choice(hits)
        return word[:i] + rng.choice(OCR_CONFUSIONS[s]) + word[i + len(s) :]
    return _plain_words(rng, text, 0.1, change)


def plain_delete(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    drop = set(rng.sample(range(len(words)), max(1, min(10, int(0.1 * len(words))))))
    return " ".join(w for i, w in enumerate(words) if i not in drop)


PLAIN: dict[str, Callable[[random.Random, str], str]] = {
    "WordSwap": plain_swap, "KeyboardTypo": plain_typo, "OcrNoise": plain_ocr, "WordDeletion": plain_delete,
}


def nlpaug_ops() -> dict[str, Any]:
    try:
        import nlpaug.augmenter.char as nac
        import nlpaug.augmenter.word as naw
    except ImportError:
        return {}
    cap = {"aug_word_p": 0.1, "aug_word_min": 1, "aug_word_max": 10, "aug_char_min": 1, "aug_char_max": 1}
    return {
        "WordSwap": naw.RandomWordAug(action="swap", aug_p=0.1, aug_min=1, aug_max=10),
        "WordDeletion": naw.RandomWordAug(action="delete", aug_p=0.1, aug_min=1, aug_max=10),
        "KeyboardTypo": nac.KeyboardAug(include_special_char=False, include_numeric=True, **cap),
        "OcrNoise": nac.OcrAug(**cap),
    }


def pipeline(op: str) -> augledger.Pipeline:
    doc = {"schema": 1, "name": f"bench-{op}", "modality": "text", "ops": [{"op": op, "p": 1.0}]}
    return augledger.compile(augledger.loads_spec(json.dumps(doc), format="json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = make_texts(args.texts)
    keys = [f"t{i}" for i in range(len(texts))]
    nl = nlpaug_ops()
    if not nl:
        print("nlpaug: not importable here; comparing against plain Python only")
    print(f"{len(texts)} texts of 30-80 words, {args.rounds} rounds, median µs per text")
    print(f"{'op':<14}{'augledger':>11}{'plain':>9}{'nlpaug':>9}{'aug/plain':>11}{'aug/nlpaug':>12}")
    for op, plain in PLAIN.items():
        pipe = pipeline(op)
        times: dict[str, list[float]] = {"augledger": [], "plain": [], "nlpaug": []}
        for r in range(args.rounds):
            runners: list[tuple[str, Callable[[], object]]] = [
                ("augledger", lambda p=pipe, e=r: [p.apply({"text": t}, key=k, epoch=e) for t, k in zip(texts, keys, strict=True)]),
                ("plain", lambda f=plain, e=r: [f(rng, t) for rng in [random.Random(e)] for t in texts]),
            ]
            if op in nl:
                runners.append(("nlpaug", lambda a=nl[op]: [a.augment(t) for t in texts]))
            for name, run in runners if r % 2 == 0 else reversed(runners):
                t0 = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - t0) / len(texts) * 1e6)
        med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
        print(f"{op:<14}{med['augledger']:>11.1f}{med['plain']:>9.1f}{med['nlpaug']:>9.1f}"
              f"{med['augledger'] / med['plain']:>11.2f}{med['augledger'] / med['nlpaug']:>12.2f}")


if __name__ == "__main__":
    main()
