"""A/B and canary variants: stable routing by key, replay of every variant, offline and online runs."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import augledger
from augledger import ReplayMismatch, SpecError, Variants
from augledger.ledger import read_ledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.verify import replay_output, verify
from helpers import SPEC, make_source, tree_digests

STRONG = {**SPEC, "ops": [{"op": "Affine", "p": 1.0, "params": {"rotate": [-60, 60]}}, {"op": "GaussNoise", "p": 1.0}]}
KEYS = [f"img/{i:05d}.png" for i in range(10_000)]


@pytest.fixture(scope="module")
def control() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(SPEC))


@pytest.fixture(scope="module")
def candidate() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(STRONG))


@pytest.fixture(scope="module")
def canary(control: augledger.Pipeline, candidate: augledger.Pipeline) -> Variants:
    return Variants({"control": control, "candidate": candidate}, weights={"control": 0.9, "candidate": 0.1}, salt="exp-42")


def test_proportions_within_binomial_tolerance(canary: Variants) -> None:
    counts = canary.counts(KEYS)
    n, p = len(KEYS), 0.1
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(counts["candidate"] - n * p) < 4 * sd, counts  # 4 sigma: fails by chance once in ~16,000 salts
    assert counts["control"] + counts["candidate"] == n


def test_routing_ignores_epoch_order_and_is_nested_as_the_canary_grows(
    control: augledger.Pipeline, candidate: augledger.Pipeline, canary: Variants
) -> None:
    shuffled = KEYS[:]
    random.Random(3).shuffle(shuffled)
    assert {k: canary.variant_of(k) for k in shuffled} == {k: canary.variant_of(k) for k in KEYS}
    bigger = Variants({"control": control, "candidate": candidate}, weights={"control": 0.8, "candidate": 0.2}, salt="exp-42")
    small = {k for k in KEYS if canary.variant_of(k) == "candidate"}
    large = {k for k in KEYS if bigger.variant_of(k) == "candidate"}
    assert small < large  # a canary going 10% -> 20% keeps every sample it had
    other_salt = Variants({"control": control, "candidate": candidate}, weights={"control": 0.9, "candidate": 0.1}, salt="exp-43")
    overlap = len(small & {k for k in KEYS if other_salt.variant_of(k) == "candidate"}) / len(small)
    assert overlap < 0.2  # another salt: an independent assignment (about 10% overlap by chance)


ROUTE_SCRIPT = """
import json, sys
import augledger
from helpers import SPEC
a = augledger.compile(augledger.parse_spec(SPEC))
b = augledger.compile(augledger.parse_spec({**SPEC, "seed": 8}))
v = augledger.Variants({"control": a, "candidate": b}, weights={"control": 0.7, "candidate": 0.3}, salt="s")
print(json.dumps([v.fingerprint, [v.variant_of(f"k{i}") for i in range(300)]]))
"""


def test_routing_is_the_same_in_fresh_interpreters_with_other_hash_seeds() -> None:
    outs = []
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(Path(__file__).parent)}
        done = subprocess.run([sys.executable, "-c", ROUTE_SCRIPT], capture_output=True, text=True, env=env, check=True)
        outs.append(done.stdout)
    assert outs[0] == outs[1]
    names = json.loads(outs[0])[1]
    assert set(names) == {"control", "candidate"}


def test_apply_uses_the_routed_variant_and_replays_both(
    control: augledger.Pipeline, candidate: augledger.Pipeline, canary: Variants, astronaut: np.ndarray
) -> None:
    seen = set()
    for key in KEYS[:60]:
        arm = canary.arm(key)
        got = canary.apply({"image": astronaut}, key=key, epoch=2)
        want = arm.apply({"image": astronaut}, key=key, epoch=2)
        assert np.array_equal(got.sample["image"], want.sample["image"])
        assert got.record.fingerprint == arm.fingerprint
        again = canary.replay({"image": astronaut}, got.record)
        assert np.array_equal(again.sample["image"], got.sample["image"])
        seen.add(canary.variant_of(key))
    assert seen == {"control", "candidate"}


def test_replay_refuses_a_record_of_another_routing(control: augledger.Pipeline, candidate: augledger.Pipeline,
                                                    canary: Variants, astronaut: np.ndarray) -> None:
    flipped = Variants({"control": control, "candidate": candidate}, weights={"control": 0.9, "candidate": 0.1}, salt="x")
    key = next(k for k in KEYS if canary.variant_of(k) == "candidate" and flipped.variant_of(k) == "control")
    record = canary.apply({"image": astronaut}, key=key, epoch=0).record
    with pytest.raises(ReplayMismatch, match=r"was made by variant 'candidate' .* routes to variant 'control'"):
        flipped.replay({"image": astronaut}, record)


def test_fingerprint_covers_weights_salt_order_and_seeds(control: augledger.Pipeline, candidate: augledger.Pipeline,
                                                         canary: Variants) -> None:
    same = Variants({"control": control, "candidate": candidate}, weights={"control": 0.9, "candidate": 0.1}, salt="exp-42")
    assert same.fingerprint == canary.fingerprint
    others = [
        Variants({"control": control, "candidate": candidate}, weights={"control": 0.8, "candidate": 0.2}, salt="exp-42"),
        Variants({"control": control, "candidate": candidate}, weights={"control": 0.9, "candidate": 0.1}, salt="other"),
        Variants({"candidate": candidate, "control": control}, weights={"control": 0.9, "candidate": 0.1}, salt="exp-42"),
        Variants({"control": control, "candidate": augledger.compile(augledger.parse_spec({**STRONG, "seed": 1}))},
                 weights={"control": 0.9, "candidate": 0.1}, salt="exp-42"),
    ]
    assert len({canary.fingerprint, *(o.fingerprint for o in others)}) == 5
    restored = pickle.loads(pickle.dumps(canary))
    assert restored.fingerprint == canary.fingerprint and restored.variant_of(KEYS[7]) == canary.variant_of(KEYS[7])
    assert Variants.from_description(canary.describe()).fingerprint == canary.fingerprint


@pytest.mark.parametrize(("weights", "message"), [
    ({"control": 0.9, "candidate": 0.2}, "must sum to 1"),
    ({"control": 1.0, "candidate": 0.0}, r"must be a number in \(0, 1\]"),
    ({"control": 0.9}, "must name exactly the variants"),
    ({"control": float("nan"), "candidate": 0.1}, "must be a number"),
])
def test_bad_weights_are_named(control: augledger.Pipeline, candidate: augledger.Pipeline,
                               weights: dict[str, float], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Variants({"control": control, "candidate": candidate}, weights=weights)


def test_variants_must_take_the_same_samples(control: augledger.Pipeline) -> None:
    boxes = augledger.compile(augledger.parse_spec({**SPEC, "targets": {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}}}))
    with pytest.raises(SpecError, match="variant 'b' has other targets than 'a'"):
        Variants({"a": control, "b": boxes})
    with pytest.raises(SpecError, match="variant name '1x'"):
        Variants({"1x": control})


# -- offline runs ---------------------------------------------------------------------------------------


def _run(canary: Variants, source: Path, out: Path, workers: int) -> Any:
    return materialize(canary, source, out, options=RunOptions(copies=2, workers=workers))


def test_offline_run_identical_for_1_and_2_workers_with_mixed_fingerprints(canary: Variants, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 30)
    one = _run(canary, source, tmp_path / "w1", 1)
    two = _run(canary, source, tmp_path / "w2", 2)
    assert tree_digests(tmp_path / "w1") == tree_digests(tmp_path / "w2")
    m = one.manifest
    assert m["fingerprint"] == canary.fingerprint and m["variants"]["salt"] == "exp-42"
    keys = sorted({r["key"] for r in read_ledger(tmp_path / "w1").rows()})
    expected = canary.counts(keys)
    assert {n: c["outputs"] for n, c in m["counts"]["variants"].items()} == {n: 2 * c for n, c in expected.items() if c}
    rows = read_ledger(tmp_path / "w1").rows()
    for row in rows:
        assert row["variant"] == canary.variant_of(row["key"])
        assert row["fingerprint"] == canary.arm(row["key"]).fingerprint
    assert {r["fingerprint"] for r in rows} == {p.fingerprint for p in canary.pipelines.values()}
    report = verify(tmp_path / "w2")
    assert report.ok and report.checked == len(rows)
    for name in ("control", "candidate"):
        row = next(r for r in rows if r["variant"] == name)
        replayed = replay_output(tmp_path / "w1", row["key"], row["epoch"])
        assert replayed.stored_matches
    assert two.manifest == one.manifest


def test_offline_resume_refuses_another_split(canary: Variants, control: augledger.Pipeline,
                                              candidate: augledger.Pipeline, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", 6)
    _run(canary, source, tmp_path / "out", 1)
    other = Variants({"control": control, "candidate": candidate}, weights={"control": 0.5, "candidate": 0.5}, salt="exp-42")
    with pytest.raises(augledger.FingerprintConflict):
        _run(other, source, tmp_path / "out", 1)


# -- online ---------------------------------------------------------------------------------------------


def test_online_dataset_and_ledger_record_each_variant(canary: Variants, tmp_path: Path, astronaut: np.ndarray) -> None:
    from augledger.torch import AugmentedDataset, OnlineLedger

    keys = KEYS[:40]
    ledger = OnlineLedger(tmp_path / "ledger", canary)
    data = AugmentedDataset([astronaut] * len(keys), canary, key=keys, ledger=ledger,
                            to_sample=lambda item: {"image": item}, from_sample=lambda s, item: s["image"])
    for i in range(len(keys)):
        out = data[(1, i)]
        assert np.array_equal(out, canary.arm(keys[i]).apply({"image": astronaut}, key=keys[i], epoch=1).sample["image"])
    data.close()
    path = ledger.merge()
    rows = read_ledger(path).rows()
    assert {r["variant"] for r in rows} == {"control", "candidate"}
    assert all(r["fingerprint"] == canary.arm(r["key"]).fingerprint for r in rows)
    assert verify(tmp_path / "ledger").ok
    # A row moved to the other variant by hand is named.
    table = pq.read_table(path)
    flipped = [("candidate" if v == "control" else "control") if i == 0 else v
               for i, v in enumerate(table.column("variant").to_pylist())]
    col = table.schema.get_field_index("variant")
    import pyarrow as pa

    pq.write_table(table.set_column(col, "variant", pa.array(flipped, pa.string())), path)
    report = verify(tmp_path / "ledger")
    assert not report.ok and "routes to" in report.problems[0].message
