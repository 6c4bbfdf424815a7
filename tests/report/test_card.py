"""The pipeline card: every op in words by node path, governance history, escaping, the preview, determinism."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import augledger
from augledger.env import EnvStamp
from augledger.errors import AugLedgerError
from augledger.io.image import decode_image, encode_image
from augledger.ops.image.allowlist import COMPOSITIONS, IMAGE_OPS
from augledger.report.card import OP_DESCRIPTIONS, render_card, write_card
from helpers import STANDARD_SPEC

#: STANDARD_SPEC plus a SomeOf holding a Sequential, so node paths go two levels deep.
NESTED_SPEC: dict[str, Any] = {
    **STANDARD_SPEC,
    "ops": [
        *STANDARD_SPEC["ops"],
        {
            "op": "SomeOf",
            "params": {"n": 1},
            "ops": [
                {"op": "Rotate", "p": 1.0, "params": {"limit": [-10, 10]}},
                {"op": "Sequential", "ops": [{"op": "VerticalFlip", "p": 0.25}, {"op": "ToGray", "p": 1.0}]},
            ],
        },
    ],
}

HISTORY = [
    # Given newest first on purpose: the card lists the oldest first.
    {"seq": 2, "at": "2025-03-02T10:00:00+00:00", "actor": "bob", "action": "promote", "version": 2,
     "reason": "reviewed grid; looks right", "detail": {"from": "draft", "to": "approved"}},
    {"seq": 1, "at": "2025-03-01T09:00:00+00:00", "actor": "alice", "action": "add", "version": 2,
     "reason": "first digits pipeline", "detail": {}},
]
GOVERNANCE: dict[str, Any] = {
    "ref": "digits@production", "name": "digits", "version": 2, "state": "approved", "added_by": "alice",
    "added_at": "2025-03-01T09:00:00+00:00", "note": None, "single_user": True, "aliases": ["production"],
    "history": HISTORY,
}


def compile_(spec: dict[str, Any]) -> augledger.Pipeline:
    return augledger.compile_spec(augledger.parse_spec(spec))


def node_paths(ops: list[dict[str, Any]], prefix: str = "ops") -> Iterator[tuple[str, str]]:
    for i, op in enumerate(ops):
        yield f"{prefix}[{i}]", op["op"].split(".")[-1]
        yield from node_paths(op.get("ops") or [], f"{prefix}[{i}].ops")


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def section(card: str, heading: str) -> list[str]:
    """The table lines of one section."""
    body = card.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("|")]


def before_spec(card: str) -> str:
    """The card without its resolved-spec block (which quotes user text verbatim inside a code fence)."""
    return card.split("## Resolved spec")[0]


def test_every_op_appears_by_node_path_with_params_in_words() -> None:
    pipe = compile_(NESTED_SPEC)
    card = render_card(pipe)
    paths = list(node_paths(pipe.resolved_spec["ops"]))
    assert len(paths) == 12
    for path, name in paths:
        assert re.search(rf"^- `{re.escape(path)}` \*\*{name}\*\*", card, re.M), f"{path} {name} missing"
    # Params in words, with units where they are known.
    assert "`rotate`: between -15 and 15 degrees" in card
    assert "`scale`: between 0.9 and 1.1 on both axes" in card
    assert "`blur_limit`: between 3 and 7 pixels (kernel size)" in card
    assert "`limit`: between -10 and 10 degrees" in card
    assert "`per_channel`: yes" in card
    assert "`border_mode`: 0 (constant)" in card
    assert "`rotate_method`: `largest_box`" in card
    assert "`n`: 1" in card and "`replace`: no" in card
    # Probabilities in words, and what a composition does with its children's p.
    assert "`ops[0]` **HorizontalFlip**, half the time: flips the image left to right." in card
    assert "`ops[1]` **Affine**, with probability 0.7:" in card
    assert "`ops[2].ops[0]` **GaussianBlur** (inside `ops[2]` OneOf), picked with weight 0.5 (50% of picks)" in card
    assert "`ops[5]` **SomeOf**, always: picks 1 of its 2 child ops uniformly at random" in card
    assert "`ops[5].ops[1].ops[0]` **VerticalFlip** (inside `ops[5].ops[1]` Sequential), with probability 0.25:" in card
    assert "`ops[5].ops[1].ops[1]` **ToGray** (inside `ops[5].ops[1]` Sequential), always:" in card
    assert "6 top-level op(s), 12 in all" in card


def test_every_allowlisted_op_has_its_own_sentence() -> None:
    assert set(OP_DESCRIPTIONS) == set(IMAGE_OPS) | set(COMPOSITIONS)


class _Stub:
    """A pipeline-shaped object whose resolved spec names ops the card has never heard of."""

    def __init__(self, pipe: augledger.Pipeline, ops: list[dict[str, Any]]) -> None:
        self.resolved_spec = {**pipe.resolved_spec, "ops": ops}
        self.name, self.fingerprint, self.modality = pipe.name, pipe.fingerprint, pipe.modality
        self.seed, self.splits = pipe.seed, pipe.splits


def test_unknown_ops_and_odd_params_get_a_generic_sentence_and_never_fail() -> None:
    ops = [
        {"op": "albumentations.FutureBlur", "p": 0.2, "params": {"radius": [1, 4], "mode": "fast", "grid": [[1, 2], [3, 4]]}},
        {"op": "audio.Gain", "params": {"db": {"low": -6, "high": 6}, "empty": [], "nothing": {}}},
        {"op": "albumentations.OneOf", "p": 1.0, "params": {}, "ops": [{"op": "albumentations.Blur", "p": 0.0, "params": {}}]},
        {"op": "albumentations.ToGray", "p": None, "params": None},
    ]
    card = render_card(_Stub(compile_(STANDARD_SPEC), ops))  # type: ignore[arg-type]
    assert "`ops[0]` **FutureBlur**, with probability 0.2: applies FutureBlur." in card
    assert "`radius`: between 1 and 4" in card and "`mode`: `fast`" in card
    assert "`grid`: 1 x 2, 3 x 4" in card
    assert "`ops[1]` **audio.Gain**, always: applies audio.Gain." in card
    assert "`db`: low -6, high 6" in card and "`empty`: none" in card and "`nothing`: none" in card
    assert "picked with weight 0 (0% of picks)" in card
    assert "`ops[3]` **ToGray**, always: converts the image to greyscale.\n  - no params" in card


def test_facts_fingerprint_and_environment_stamp() -> None:
    pipe = compile_(STANDARD_SPEC)
    card = render_card(pipe)
    assert f"| fingerprint | `{pipe.fingerprint}` |" in card
    assert "| name | digits-train |" in card
    assert "| seed | 1234 |" in card
    assert "| modality | image |" in card
    assert "| splits it may touch | train; val, test and predict are never augmented |" in card
    assert "| description | (none) |" in card
    stamp = EnvStamp.current("image")
    for component, version in {"augledger": stamp.augledger, "numpy": stamp.numpy, **stamp.backends}.items():
        assert f"| {component} | `{version}` |" in card
    assert "albumentations" in stamp.backends and "opencv" in stamp.backends


def test_a_spec_without_governance_says_not_registered() -> None:
    card = render_card(compile_({**STANDARD_SPEC, "splits": ["train", "val"]}))
    assert "| version | not registered |" in card
    assert "| owner | not recorded: the spec is not in a registry |" in card
    assert "| lifecycle state | not registered |" in card
    assert "This pipeline is not registered" in card
    assert "| splits it may touch | train, val; test and predict are never augmented |" in card
    assert "| # | when |" not in card and "four-eyes" not in card


def test_governance_history_aliases_and_four_eyes() -> None:
    card = render_card(compile_(STANDARD_SPEC), governance=GOVERNANCE)
    assert "| version | 2 |" in card
    assert "| registry ref | `digits@production` |" in card
    assert "| owner | alice (added 2025-03-01T09:00:00+00:00) |" in card
    assert "| lifecycle state | approved: cleared for use |" in card
    add = "| 1 | 2025-03-01T09:00:00+00:00 | alice | add | 2 | - | first digits pipeline |"
    promote = "| 2 | 2025-03-02T10:00:00+00:00 | bob | promote | 2 | draft → approved | reviewed grid; looks right |"
    assert add in card and promote in card
    assert card.index(add) < card.index(promote), "history is listed oldest first"
    assert "Aliases pointing at this version: `production`." in card
    assert "four-eyes approval is off" in card
    not_single = render_card(compile_(STANDARD_SPEC), governance={**GOVERNANCE, "single_user": False, "aliases": []})
    assert "four-eyes approval is on" in not_single and "No alias points at this version." in not_single


def test_alias_moves_and_missing_optional_keys() -> None:
    moved = {"seq": 3, "at": "2025-03-03T00:00:00+00:00", "actor": "carol", "action": "alias", "version": 2,
             "reason": None, "detail": {"alias": "production", "from": 1, "to": 2}}
    card = render_card(compile_(STANDARD_SPEC), governance={**GOVERNANCE, "history": [*HISTORY, moved]})
    assert "| 3 | 2025-03-03T00:00:00+00:00 | carol | alias | 2 | alias `production`: v1 → v2 | - |" in card
    sparse = render_card(compile_(STANDARD_SPEC), governance={"version": 7, "history": [{"actor": "dave"}]})
    assert "| version | 7 |" in sparse
    assert "| owner | not recorded |" in sparse and "| lifecycle state | not recorded |" in sparse
    assert "| - | - | dave | - | - | - | - |" in sparse
    assert "four-eyes approval is not recorded" in sparse
    empty = render_card(compile_(STANDARD_SPEC), governance={})
    assert "The registry holds no history for this version." in empty


def test_user_text_is_escaped_and_cannot_break_tables_or_inject_html() -> None:
    description = "cls | aug <script>alert(1)</script>\n| injected | row |"
    governance = {**GOVERNANCE, "note": "see <b>this</b> | that", "added_by": "eve|<img src=x onerror=alert(1)>",
                  "history": [{**HISTORY[0], "reason": "ok | fine <script>x</script>\nsecond line"}]}
    pipe = compile_({**STANDARD_SPEC, "name": "cls <i>x</i> | y", "description": description})
    card = render_card(pipe, governance=governance)
    prose = before_spec(card)
    assert "<script>" not in prose and "<b>" not in prose and "<img" not in prose and "<i>" not in prose
    assert card.startswith("# Pipeline card: cls &lt;i&gt;x&lt;/i&gt; \\| y\n")
    assert "cls \\| aug &lt;script&gt;alert(1)&lt;/script&gt; \\| injected \\| row \\|" in prose
    facts = section(prose, "## Facts")
    history = section(prose, "## Lifecycle")
    assert len(facts) == 14 and all(unescaped_pipes(line) == 3 for line in facts), facts
    assert len(history) == 3 and all(unescaped_pipes(line) == 8 for line in history), history
    assert "ok \\| fine &lt;script&gt;x&lt;/script&gt; second line" in history[2]
    assert "| note | see &lt;b&gt;this&lt;/b&gt; \\| that |" in facts
    # The resolved spec keeps the text verbatim, inside a code fence, and parses back to the spec.
    block = card.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == pipe.resolved_spec


def test_card_is_deterministic() -> None:
    a = render_card(compile_(NESTED_SPEC), governance=copy.deepcopy(GOVERNANCE), preview_name="x.preview.png")
    b = render_card(compile_(NESTED_SPEC), governance=copy.deepcopy(GOVERNANCE), preview_name="x.preview.png")
    assert a == b
    assert a != render_card(compile_(STANDARD_SPEC), governance=GOVERNANCE, preview_name="x.preview.png")


def test_write_card_with_a_preview(tmp_path: Path, astronaut: np.ndarray) -> None:
    image = tmp_path / "in" / "astronaut.png"
    image.parent.mkdir()
    image.write_bytes(encode_image(astronaut, "png"))
    pipe = compile_(STANDARD_SPEC)
    out = tmp_path / "cards" / "digits.md"
    written = write_card(out, pipe, governance=GOVERNANCE, preview_image=image, n=3)
    preview = tmp_path / "cards" / "digits.preview.png"
    assert written == [out, preview]
    grid, _ = decode_image(preview.read_bytes())
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.shape[0] > 192  # two rows of tiles: original + 3 epochs
    text = out.read_text(encoding="utf-8")
    assert "![preview](digits.preview.png)" in text
    assert text == render_card(pipe, governance=GOVERNANCE, preview_name="digits.preview.png")
    first = (out.read_bytes(), preview.read_bytes())
    write_card(out, pipe, governance=GOVERNANCE, preview_image=image, n=3)
    assert (out.read_bytes(), preview.read_bytes()) == first


def test_write_card_without_a_preview_writes_only_the_card(tmp_path: Path) -> None:
    out = tmp_path / "card.md"
    assert write_card(out, compile_(STANDARD_SPEC)) == [out]
    assert "![preview]" not in out.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md"]


def test_a_missing_or_unusable_preview_image_is_an_augledger_error(tmp_path: Path) -> None:
    out = tmp_path / "card.md"
    missing = tmp_path / "nope.png"
    with pytest.raises(AugLedgerError, match=r"preview image '.*nope\.png' does not exist; pass the path of an existing image file"):
        write_card(out, compile_(STANDARD_SPEC), preview_image=missing)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(AugLedgerError, match=r"cannot use '.*broken\.png' as the preview image \(not-an-image\).*JPEG or PNG"):
        write_card(out, compile_(STANDARD_SPEC), preview_image=broken)
    assert not out.exists(), "nothing is written when the preview cannot be made"
