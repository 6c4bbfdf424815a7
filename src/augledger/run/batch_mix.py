"""Batch-level mixing (MixUp, CutMix): the draws, as a pure function of the batch, and their check.

No torch here: the online datasets apply the draws (:mod:`augledger.run.online.mixing`), and
``augledger verify`` recomputes them from a ledger alone, without the training data.

Derivation, for a batch whose samples are ``[(epoch, key), ...]`` in batch order:

* ``batch``: SHA-256 of canonical JSON ``["augledger/batch/v1", [[epoch, key], ...]]``, the
  batch's identity. The DataLoader forms batches from the sampler's order and ``batch_size``
  alone, so every worker layout forms the same batches and derives the same identity.
* the mix seed: BLAKE2b-128 of canonical JSON ``["augledger/batch-mix/v1", fingerprint, seed,
  {"op", "alpha", "p"}, batch]``, fed to :func:`~augledger.seeding.generators_for`.
* the draws, in this order, from that NumPy generator: ``permutation(n)`` (sample ``i`` is mixed
  with sample ``perm[i]``, possibly itself), ``random(n)`` (sample ``i`` is mixed when below ``p``),
  ``beta(alpha, alpha, n)`` (its lambda), and for CutMix ``integers(0, w, n)`` and
  ``integers(0, h, n)`` (the box centres). Every value is drawn whether or not a sample is mixed,
  so ``p`` never shifts the stream.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.seeding import generators_for

__all__ = ["MIX_OPS", "MixDraw", "batch_identity", "check_mix_rows", "cutmix_box", "draw_mix", "mix_record"]

#: The batch ops and the name each records in the ledger's ``mix`` column.
MIX_OPS = ("augledger.MixUp", "augledger.CutMix")
_BATCH_DOMAIN = "augledger/batch/v1"
_MIX_DOMAIN = "augledger/batch-mix/v1"


@dataclass(frozen=True)
class MixDraw:
    """What one sample of a batch receives.

    Attributes:
        partner: the batch position of the sample it is mixed with (itself is possible).
        applied: whether it is mixed at all (a draw below ``p``).
        lam: the weight of the sample itself, in [0, 1] (``1.0`` when not applied). For CutMix,
            the fraction of the image left outside the box, not the Beta draw.
        box: CutMix only, ``(x0, y0, x1, y1)`` in pixels (exclusive ends), the region taken from
            the partner; ``None`` for MixUp or when not applied.
    """

    partner: int
    applied: bool
    lam: float
    box: tuple[int, int, int, int] | None = None


def batch_identity(samples: Sequence[tuple[int, str]]) -> str:
    """The batch's identity: ``sha256:`` of its ``(epoch, key)`` pairs in batch order."""
    return sha256_hex(canonical_json([_BATCH_DOMAIN, [[int(e), str(k)] for e, k in samples]]))


def _mix_seed(op: str, alpha: float, p: float, fingerprint: str, seed: int, batch: str) -> int:
    payload = canonical_json([_MIX_DOMAIN, fingerprint, seed, {"op": op, "alpha": alpha, "p": p}, batch])
    return int.from_bytes(hashlib.blake2b(payload, digest_size=16).digest(), "little")


def cutmix_box(lam: float, cx: int, cy: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The CutMix box for a drawn ``lam`` centred at ``(cx, cy)``, clipped to the image.

    The standard formula (Yun et al. 2019, the reference implementation): sides ``W*sqrt(1-lam)``
    and ``H*sqrt(1-lam)`` truncated to ints; clipping at the border shrinks the box, which is why
    the recorded lambda is recomputed from its area.
    """
    cut = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(width * cut), int(height * cut)
    x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    return x0, y0, x1, y1


def draw_mix(
    op: str, *, alpha: float, p: float, fingerprint: str, seed: int, batch: str, size: int,
    image_hw: tuple[int, int] | None = None,
) -> list[MixDraw]:
    """Every sample's draw for one batch: a pure function of its arguments (see the module docstring).

    Args:
        op: ``augledger.MixUp`` or ``augledger.CutMix``.
        alpha: the Beta distribution's both parameters (> 0).
        p: the probability that a sample is mixed.
        fingerprint, seed: the pipeline's.
        batch: :func:`batch_identity` of the batch.
        size: the number of samples in the batch.
        image_hw: ``(height, width)`` of the batch's images (CutMix needs it).
    """
    if op not in MIX_OPS:
        raise ValueError(f"op must be one of {list(MIX_OPS)}; got {op!r}")
    rng, _ = generators_for(_mix_seed(op, alpha, p, fingerprint, seed, batch))
    perm = rng.permutation(size)
    mixed = rng.random(size) < p
    lams = rng.beta(alpha, alpha, size)
    draws: list[MixDraw] = []
    if op == "augledger.MixUp":
        for i in range(size):
            applied = bool(mixed[i])
            draws.append(MixDraw(int(perm[i]), applied, float(lams[i]) if applied else 1.0))
        return draws
    if image_hw is None:
        raise ValueError("CutMix needs the images' (height, width)")
    height, width = image_hw
    cxs = rng.integers(0, width, size)
    cys = rng.integers(0, height, size)
    for i in range(size):
        if not mixed[i]:
            draws.append(MixDraw(int(perm[i]), False, 1.0))
            continue
        box = cutmix_box(float(lams[i]), int(cxs[i]), int(cys[i]), height, width)
        area = (box[2] - box[0]) * (box[3] - box[1])
        draws.append(MixDraw(int(perm[i]), True, 1.0 - area / float(height * width), box))
    return draws


def mix_record(
    op: str, *, alpha: float, p: float, batch: str, size: int, position: int, draw: MixDraw, partner_key: str,
    image_hw: tuple[int, int] | None,
) -> str:
    """The ``mix`` column of one sample's ledger row (canonical JSON).

    It holds what recomputing the draws needs (op, params, batch identity, size, position, image
    size for CutMix) and what they gave (partner, lambda, box), so a verifier can compare the two.
    """
    entry: dict[str, Any] = {
        "op": op, "params": {"alpha": alpha, "p": p}, "batch": batch, "size": size, "position": position,
        "applied": draw.applied,
    }
    if draw.applied:
        entry.update(partner=partner_key, partner_position=draw.partner, lam=draw.lam)
        if draw.box is not None:
            entry["box"] = list(draw.box)
    if op == "augledger.CutMix" and image_hw is not None:
        entry["image_size"] = list(image_hw)
    return canonical_json(entry).decode()


def _expected(entry: Mapping[str, Any], fingerprint: str, seed: int) -> MixDraw:
    params = entry["params"]
    hw = entry.get("image_size")
    draws = draw_mix(
        str(entry["op"]), alpha=float(params["alpha"]), p=float(params["p"]), fingerprint=fingerprint, seed=seed,
        batch=str(entry["batch"]), size=int(entry["size"]), image_hw=(int(hw[0]), int(hw[1])) if hw else None,
    )
    return draws[int(entry["position"])]


def _row_problem(entry: Mapping[str, Any], fingerprint: str, seed: int) -> str | None:
    try:
        draw = _expected(entry, fingerprint, seed)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return f"its mix record cannot be recomputed ({type(exc).__name__}: {exc}): the record was edited"
    recorded = (entry.get("applied"), entry.get("partner_position"), entry.get("lam"), entry.get("box"))
    expected = (draw.applied, draw.partner if draw.applied else None, draw.lam if draw.applied else None,
                list(draw.box) if draw.box is not None else None)
    if recorded != expected:
        return (f"its {entry['op']} record (applied, partner position, lambda, box) = {recorded} is not what the "
                f"batch derives ({expected}): the row was edited")
    return None


def check_mix_rows(
    rows: Sequence[Mapping[str, Any]], checked: Sequence[Mapping[str, Any]], *, fingerprint: str, seed: int,
) -> list[tuple[str, int, str]]:
    """Problems with the ``mix`` records of ``checked`` rows, as ``(key, epoch, message)``.

    Each checked row's draw is recomputed from its own record (batch identity, size, position,
    params) and compared with the recorded partner position, lambda and box. Where the ledger
    holds every row of a batch (sampling rate 1), the batch identity is recomputed from those
    rows' keys and epochs in position order, and each partner key is checked against the key at
    the partner position; with sampling, partner keys are checked where the partner's row is kept.
    """
    batches: dict[str, dict[int, Mapping[str, Any]]] = {}
    entries: dict[int, dict[str, Any]] = {}
    for row in rows:
        if not row.get("mix"):
            continue
        entry = json.loads(row["mix"])
        entries[id(row)] = entry
        if isinstance(entry, dict) and isinstance(entry.get("position"), int):
            batches.setdefault(str(entry.get("batch")), {})[entry["position"]] = row
    problems: list[tuple[str, int, str]] = []
    for row in checked:
        entry = entries.get(id(row)) if row.get("mix") else None
        if entry is None:
            continue
        key, epoch = row["key"], row["epoch"]
        if not isinstance(entry, dict) or entry.get("op") not in MIX_OPS:
            problems.append((key, epoch, f"its mix record is not a batch op of {list(MIX_OPS)}"))
            continue
        problem = _row_problem(entry, fingerprint, seed)
        if problem:
            problems.append((key, epoch, problem))
            continue
        members = batches.get(str(entry["batch"]), {})
        if len(members) == int(entry["size"]) and set(members) == set(range(len(members))):
            samples = [(int(members[i]["epoch"]), str(members[i]["key"])) for i in range(len(members))]
            if batch_identity(samples) != entry["batch"]:
                problems.append((key, epoch, "its batch identity is not the digest of the batch's recorded keys "
                                             "and epochs: a row of the batch was edited or moved"))
                continue
        if entry["applied"]:
            partner = members.get(int(entry["partner_position"]))
            if partner is not None and partner["key"] != entry["partner"]:
                problems.append((key, epoch, f"its recorded partner {entry['partner']!r} is not the key at batch "
                                             f"position {entry['partner_position']} ({partner['key']!r})"))
    return problems
