"""Running resolved text ops: seeded per sample, recorded as replay recipes.

* **Randomness.** An applier owns one :class:`~augledger.seeding.SampleGenerators` and re-seeds it
  from the sample's seed before every call; ops and compositions draw only from its
  ``random.Random`` (through ``random()``), in spec order. No global generator is touched.
* **Compositions** keep the semantics of their Albumentations namesakes: ``OneOf`` (with its ``p``,
  picks one child with probability proportional to the children's ``p`` and applies it
  unconditionally), ``SomeOf`` (with its ``p``, picks ``n`` children uniformly, in spec order, each
  then applied with its own ``p``), ``Sequential`` (with its ``p``, every child with its own ``p``).
* **Records.** Each applied leaf op becomes ``{"op": "augledger.text.X", "path": "ops[1].ops[0]",
  "params": {"edits": [[start, old, new], ...]}}``; :func:`apply_recorded` re-makes the op's output
  from its input and that record alone. An op that drew nothing to change (no candidate word) is
  recorded with no edits, so the record lists every op that ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from augledger.errors import ReplayMismatch, SampleError
from augledger.ops.text.ops import TEXT_OPS
from augledger.ops.text.resolve import NAMESPACE
from augledger.ops.text.tokens import below, pick, splice
from augledger.seeding import SampleGenerators

__all__ = ["TextApplier", "TextCompiled", "apply_recorded", "replay_records"]

_Applied = list[tuple[str, str, list[Any]]]  # (bare op name, node path, edits)


def apply_recorded(text: str, op_record: Mapping[str, Any]) -> str:
    """The output of one recorded text op, from its input ``text`` and its record alone.

    A pure function: no seed, table or tokenizer is consulted, so records replay across releases.

    Raises:
        ReplayMismatch: the record is not a text op's, or its edits do not fit ``text``.
    """
    name = op_record.get("op")
    if not isinstance(name, str) or name.removeprefix(f"{NAMESPACE}.") not in TEXT_OPS:
        raise ReplayMismatch(f"not a text op record: {dict(op_record)!r}")
    params = op_record.get("params")
    edits = params.get("edits") if isinstance(params, Mapping) else None
    if not isinstance(edits, list):
        raise ReplayMismatch(f"{name}: a text op record needs params.edits, a list of [start, old, new]")
    return splice(text, edits, op=f"{name} at {op_record.get('path', '?')}")


def replay_records(text: str, ops: Sequence[Mapping[str, Any]]) -> str:
    """Apply a sample's recorded ops in order (``Record.ops`` of a text pipeline) to its original text."""
    for record in ops:
        text = apply_recorded(text, record)
    return text


class TextCompiled:
    """Resolved text ops, ready to hand out one :class:`TextApplier` per thread."""

    sample_fields = frozenset({"text"})

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self.ops = [dict(op) for op in ops]

    def new_applier(self) -> TextApplier:
        return TextApplier(self.ops)

    def record_ops(self, applied: _Applied) -> tuple[dict[str, Any], ...]:
        return tuple({"op": f"{NAMESPACE}.{name}", "path": path, "params": {"edits": edits}}
                     for name, path, edits in applied)


class TextApplier:
    """One thread's generators. Not thread-safe (they are re-seeded by every call)."""

    __slots__ = ("_generators", "_ops")

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self._ops = ops
        self._generators = SampleGenerators()

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        if not isinstance(sample, Mapping) or not isinstance(sample.get("text"), str) or set(sample) - {"text"}:
            got = (f"keys {sorted(sample)}" if isinstance(sample, Mapping) else type(sample).__name__)
            raise SampleError(f"sample {key!r} must be a dict with only a 'text' str, e.g. {{'text': 'a b c'}}; got {got}")
        _numpy, rng = self._generators.reseed(seed)
        applied: _Applied = []
        text = sample["text"]
        for i, node in enumerate(self._ops):
            text = _run(node, f"ops[{i}]", text, rng, applied, force=False)
        return {"text": text}, applied


def _run(node: Mapping[str, Any], path: str, text: str, rng: Any, applied: _Applied, *, force: bool) -> str:
    if not (force or rng.random() < node["p"]):
        return text
    bare = str(node["op"]).removeprefix(f"{NAMESPACE}.")
    children: Sequence[Mapping[str, Any]] = node.get("ops") or ()
    if bare == "OneOf":
        weights = [float(child["p"]) for child in children]
        mark, total, index = rng.random() * sum(weights), 0.0, len(children) - 1
        for i, w in enumerate(weights):
            total += w
            if mark < total:
                index = i
                break
        return _run(children[index], f"{path}.ops[{index}]", text, rng, applied, force=True)
    if bare in ("SomeOf", "Sequential"):
        if bare == "Sequential":
            chosen = list(range(len(children)))
        elif node["params"]["replace"]:
            chosen = sorted(below(rng, len(children)) for _ in range(node["params"]["n"]))
        else:
            chosen = sorted(pick(rng, range(len(children)), node["params"]["n"]))
        for i in chosen:
            text = _run(children[i], f"{path}.ops[{i}]", text, rng, applied, force=False)
        return text
    edits = TEXT_OPS[bare].sample(text, node["params"], rng)
    applied.append((bare, path, edits))
    return splice(text, edits, op=bare) if edits else text
