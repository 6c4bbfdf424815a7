"""The fixed tables of the text ops: QWERTY key neighbours and OCR confusions.

They are data in code, so a spec names no file and nothing is downloaded. Changing a table changes
what a seeded run draws (the environment stamp carries :data:`TABLES_VERSION`), never what a
record replays: records hold the edits themselves.
"""

from __future__ import annotations

__all__ = ["KEYBOARD_NEIGHBOURS", "OCR_CONFUSIONS", "TABLES_VERSION"]

#: Bumped whenever a table below changes.
TABLES_VERSION = "1"

_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    """Keys beside each key on a QWERTY layout: left, right, and the row above and below (offset rows)."""
    table: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for c, key in enumerate(row):
            near = [row[c - 1] if c > 0 else "", row[c + 1] if c + 1 < len(row) else ""]
            for other, span in ((r - 1, (c, c + 1)), (r + 1, (c - 1, c))):
                if 0 <= other < len(_ROWS):
                    near += [_ROWS[other][i] for i in span if 0 <= i < len(_ROWS[other])]
            table[key] = "".join(k for k in near if k)
    return table


#: Lower-case key -> the keys around it (``"g"`` -> ``"fhtyvb"``); a typo replaces a letter by one of them.
KEYBOARD_NEIGHBOURS: dict[str, str] = _neighbours()

#: What an OCR engine reads for a glyph or glyph pair. Multi-character sources (``rn``) are
#: matched like single ones; the replacement may be longer or shorter than the source.
OCR_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "0": ("O", "o"), "O": ("0",), "o": ("0",),
    "1": ("l", "I"), "l": ("1", "I"), "I": ("1", "l"),
    "rn": ("m",), "m": ("rn",),
    "5": ("S",), "S": ("5",),
    "8": ("B",), "B": ("8",),
    "2": ("Z",), "Z": ("2",),
    "6": ("b",), "b": ("6",),
    "9": ("g", "q"), "g": ("9",), "q": ("9",),
    "cl": ("d",), "d": ("cl",),
    "vv": ("w",), "w": ("vv",),
    "e": ("c",), "c": ("e",),
    "u": ("v",), "v": ("u",),
}
