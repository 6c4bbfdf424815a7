"""``augledger preview`` for text: the original and N deterministic variants as a before/after table.

Changed words are marked from the records themselves (each op's ``[start, old, new]`` edits), not
by diffing: plain text marks them ``[[new]]``, Markdown ``**new**`` (each row counts its deleted
words). Epoch ``c`` of key ``k`` is exactly what a run makes as copy ``c`` of ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from augledger.errors import AugLedgerError, Quarantined
from augledger.variants import Augmenter

__all__ = ["preview_rows", "preview_text_file", "render_markdown", "render_plain"]


def _moved(span: list[int], pos_map: Sequence[tuple[int, int, int]]) -> list[int] | None:
    delta = 0
    for start, end, d in pos_map:
        if end <= span[0]:
            delta += d
        elif start < span[1]:
            return None  # rewritten by a later op: the later op's span marks it
    return [span[0] + delta, span[1] + delta]


def _variants(pipe: Augmenter, text: str, key: str, n: int) -> list[tuple[int, str, list[list[int]], int]]:
    from augledger.ops.text.tokens import splice

    rows = []
    for epoch in range(n):
        result = pipe.apply({"text": text}, key=key, epoch=epoch)
        current, deleted = text, 0
        spans: list[list[int]] = []
        for record in result.record.ops:
            edits = record["params"]["edits"]
            pos_map = [(s, s + len(o), len(w) - len(o)) for s, o, w in edits]
            moved = [_moved(s, pos_map) for s in spans]
            spans = [s for s in moved if s is not None]
            shift = 0
            for s, o, w in edits:
                if w:
                    spans.append([s + shift, s + shift + len(w)])
                elif o.strip():
                    deleted += len(o.split())
                shift += len(w) - len(o)
            current = splice(current, edits)
        rows.append((epoch, current, sorted(spans), deleted))
    return rows


def _marked(text: str, spans: Sequence[Sequence[int]], left: str, right: str) -> str:
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out += [text[pos:start], left, text[start:end], right]
        pos = end
    return "".join(out) + text[pos:]


def preview_rows(pipe: Augmenter, text: str, *, key: str, n: int, left: str, right: str) -> list[tuple[str, str, int]]:
    """``[(label, marked text, words deleted), ...]``: the original, then epochs ``0..n-1``."""
    rows = [("original", text, 0)]
    for epoch, current, spans, deleted in _variants(pipe, text, key, n):
        rows.append((f"epoch {epoch}", _marked(current, spans, left, right), deleted))
    return rows


def render_plain(pipe: Augmenter, text: str, *, key: str, n: int) -> str:
    """The table as plain text: one block per row, changed text in ``[[...]]``."""
    blocks = [f"preview of key {key!r}, pipeline {pipe.fingerprint[:19]}… (changed text in [[...]])"]
    for label, marked, deleted in preview_rows(pipe, text, key=key, n=n, left="[[", right="]]"):
        note = f" ({deleted} word(s) deleted)" if deleted else ""
        blocks.append(f"--- {label}{note} ---\n{marked.rstrip(chr(10))}")
    return "\n".join(blocks) + "\n"


def render_markdown(pipe: Augmenter, text: str, *, key: str, n: int) -> str:
    """The table as Markdown: ``| variant | text | deleted |``, changed text in bold."""
    lines = [f"Preview of key `{key}`, pipeline `{pipe.fingerprint[:19]}…` (changed text in **bold**)", "",
             "| variant | text | words deleted |", "| --- | --- | ---: |"]
    for label, marked, deleted in preview_rows(pipe, text, key=key, n=n, left="**", right="**"):
        cell = marked.strip().replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
        lines.append(f"| {label} | {cell} | {deleted} |")
    return "\n".join(lines) + "\n"


def preview_text_file(pipe: Augmenter, path: Path, *, key: str, n: int, out: Path | None) -> str:
    """``augledger preview`` of a text file: the plain table, or with ``out`` (``.md``) the Markdown
    table written there and a line saying so.

    Raises:
        AugLedgerError: the file cannot be read or is not usable text (its quarantine reason), or
            ``out`` is not a ``.md`` file.
    """
    from augledger.io.text import decode_text

    if out is not None and out.suffix.lower() != ".md":
        raise AugLedgerError(f"-o for a text preview must end in .md; got {out.name!r}")
    try:
        text, _meta = decode_text(path.read_bytes())
    except OSError as exc:
        raise AugLedgerError(f"cannot read {str(path)!r} ({exc.strerror or exc}); pass a UTF-8 .txt file") from None
    except Quarantined as exc:
        raise AugLedgerError(f"cannot use {str(path)!r} ({exc.reason}): {exc}") from None
    if out is None:
        return render_plain(pipe, text, key=key, n=n)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(pipe, text, key=key, n=n), encoding="utf-8")
    return f"wrote {out} ({n} variants of key {key!r}, pipeline {pipe.fingerprint[:19]}…)\n"
