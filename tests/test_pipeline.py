"""Per-sample determinism, replay, records, targets and isolation of the pipeline."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import pickle
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import augledger
from augledger import EnvironmentMismatchWarning, EnvStamp, Record, ReplayMismatch, SampleError, sample_digest
from helpers import STANDARD_SPEC

GOLDEN = Path(__file__).parent / "golden"
KEYS = [f"img/{i:03d}.png" for i in range(12)]


def digests(pipe: augledger.Pipeline, images: list[np.ndarray], keys: list[str], epoch: int) -> dict[str, str]:
    out = {}
    for key in keys:
        image = images[int(key[4:7]) % len(images)]
        result = pipe.apply({"image": image}, key=key, epoch=epoch)
        out[key] = sample_digest(result.sample) + "|" + result.record.to_json()
    return out


def _worker_digests(args: tuple[augledger.Pipeline, list[np.ndarray], list[str], int]) -> dict[str, str]:
    return digests(*args)


def test_same_inputs_same_bytes_and_record(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    a = digests(standard_pipeline, photos, KEYS, 0)
    b = digests(standard_pipeline, photos, list(reversed(KEYS)), 0)
    assert a == b


def test_a_recompiled_pipeline_gives_the_same_bytes(photos: list[np.ndarray]) -> None:
    one = augledger.compile(augledger.parse_spec(STANDARD_SPEC))
    two = augledger.compile(augledger.parse_spec(STANDARD_SPEC))
    # Warm one pipeline up on other keys first: no state may carry over between calls.
    digests(one, photos, ["img/900.png", "img/901.png"], 5)
    assert digests(one, photos, KEYS, 1) == digests(two, photos, KEYS, 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_process_pool_with_shuffled_order_matches(
    standard_pipeline: augledger.Pipeline, photos: list[np.ndarray], workers: int
) -> None:
    expected = digests(standard_pipeline, photos, KEYS, 2)
    shuffled = KEYS[:]
    random.Random(workers).shuffle(shuffled)
    chunks = [shuffled[i::3] for i in range(3)]
    # spawn: each worker is a fresh interpreter that receives the pipeline by pickle.
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        got: dict[str, str] = {}
        for part in pool.map(_worker_digests, [(standard_pipeline, photos, c, 2) for c in chunks]):
            got.update(part)
    assert got == expected


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_fresh_interpreter_with_other_hash_seed_matches(
    standard_pipeline: augledger.Pipeline, photos: list[np.ndarray], tmp_path: Path, hash_seed: str
) -> None:
    np.save(tmp_path / "photos.npy", np.stack(photos))
    (tmp_path / "spec.json").write_text(json.dumps(STANDARD_SPEC))
    code = f"""
import json, sys, numpy as np, augledger
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_pipeline import digests, KEYS
pipe = augledger.compile(augledger.load_spec({str(tmp_path / 'spec.json')!r}))
photos = list(np.load({str(tmp_path / 'photos.npy')!r}))
print(json.dumps(digests(pipe, photos, KEYS, 3)))
"""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == digests(standard_pipeline, photos, KEYS, 3)


def test_threads_share_one_pipeline_safely(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    expected = digests(standard_pipeline, photos, KEYS, 4)
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(lambda k: digests(standard_pipeline, photos, [k], 4), KEYS * 3))
    merged: dict[str, str] = {}
    for part in parts:
        for k, v in part.items():
            assert merged.setdefault(k, v) == v
    assert merged == expected


def test_key_and_epoch_change_the_draws(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    by_epoch = {standard_pipeline.apply({"image": astronaut}, key="a.png", epoch=e).record.seed for e in range(20)}
    by_key = {standard_pipeline.apply({"image": astronaut}, key=f"{k}.png", epoch=0).record.seed for k in range(20)}
    assert len(by_epoch) == 20 and len(by_key) == 20
    outputs = {
        sample_digest(standard_pipeline.apply({"image": astronaut}, key="a.png", epoch=e).sample) for e in range(20)
    }
    # Five ops with p in [0.3, 0.7]: 20 epochs giving fewer than 10 distinct outputs would mean
    # the epoch is not reaching the draws.
    assert len(outputs) >= 10


def test_other_seed_same_fingerprint_other_draws(astronaut: np.ndarray) -> None:
    a = augledger.compile(augledger.parse_spec(STANDARD_SPEC))
    b = augledger.compile(augledger.parse_spec({**STANDARD_SPEC, "seed": 99}))
    assert a.fingerprint == b.fingerprint
    ra = a.apply({"image": astronaut}, key="k", epoch=0).record
    rb = b.apply({"image": astronaut}, key="k", epoch=0).record
    assert ra.seed != rb.seed


def test_replay_reproduces_bytes(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    for epoch in range(6):
        original = standard_pipeline.apply({"image": photos[1]}, key="cat.png", epoch=epoch, digests=True)
        record = Record.from_json(original.record.to_json())  # through JSON, as from a ledger
        replayed = standard_pipeline.replay({"image": photos[1]}, record)
        assert np.array_equal(replayed.sample["image"], original.sample["image"])
        assert replayed.record == original.record


def test_replay_detects_tampering(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    rec = standard_pipeline.apply({"image": photos[0]}, key="a.png", epoch=0, digests=True).record.to_dict()
    bad_output = Record.from_dict({**rec, "output_digest": "sha256:" + "0" * 64})
    with pytest.raises(ReplayMismatch, match=r"output for .a.png. .* differs from the recorded digest"):
        standard_pipeline.replay({"image": photos[0]}, bad_output)
    with pytest.raises(ReplayMismatch, match=r"input for .a.png. differs"):
        standard_pipeline.replay({"image": photos[1]}, Record.from_dict(rec))
    bad_ops = Record.from_dict({**rec, "ops": [{"op": "albumentations.Blur", "params": {}}]})
    with pytest.raises(ReplayMismatch, match="diverged at applied op 0"):
        standard_pipeline.replay({"image": photos[0]}, bad_ops)
    other = Record.from_dict({**rec, "fingerprint": "sha256:" + "1" * 64})
    with pytest.raises(ReplayMismatch, match="compile the spec that produced the record"):
        standard_pipeline.replay({"image": photos[0]}, other)


def test_replay_warns_on_environment_mismatch(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    record = standard_pipeline.apply({"image": astronaut}, key="a", epoch=0).record
    current = EnvStamp.current()
    older = EnvStamp.from_dict({**current.to_dict(), "backends": {**current.backends, "opencv": "3.0.0"}})
    with pytest.warns(EnvironmentMismatchWarning, match=r"opencv 3\.0\.0 -> "):
        standard_pipeline.replay({"image": astronaut}, record, env=older)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        standard_pipeline.replay({"image": astronaut}, record, env=current)


def test_records_are_json_and_pickle_round_trippable(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    for epoch in range(8):
        record = standard_pipeline.apply({"image": astronaut}, key="a", epoch=epoch, digests=True).record
        text = record.to_json()
        assert json.loads(text) == record.to_dict()
        assert Record.from_json(text) == record
        assert Record.from_json(text).to_json() == text
        assert pickle.loads(pickle.dumps(record)) == record
        for op in record.ops:
            for value in op["params"].values():
                assert not isinstance(value, np.ndarray)
    with pytest.raises(AttributeError, match="immutable"):
        record.key = "b"  # type: ignore[misc]


def test_array_params_are_summarised_never_raw(astronaut: np.ndarray) -> None:
    spec = {"schema": 1, "name": "t", "ops": [{"op": "Affine", "p": 1}, {"op": "GaussNoise", "p": 1}]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    ops = pipe.apply({"image": astronaut}, key="a", epoch=0).record.ops
    affine, noise = ops[0]["params"], ops[1]["params"]
    assert affine["matrix"]["array"]["shape"] == [3, 3] and len(affine["matrix"]["array"]["sha256"]) == 64
    assert noise["noise_map"] == {"array": {"shape": [96, 96, 3], "dtype": "float32"}}
    assert "shape" not in affine and "interpolation" not in affine


def test_pipeline_pickles(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    clone = pickle.loads(pickle.dumps(standard_pipeline))
    assert clone.fingerprint == standard_pipeline.fingerprint
    assert digests(clone, photos, KEYS, 0) == digests(standard_pipeline, photos, KEYS, 0)


def test_input_is_not_modified(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    image = astronaut.copy()
    sample = {"image": image}
    for epoch in range(10):
        standard_pipeline.apply(sample, key="a", epoch=epoch)
    assert np.array_equal(image, astronaut) and list(sample) == ["image"]


def test_global_rng_state_is_untouched(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    saved = random.getstate(), np.random.get_state()
    try:
        _check_global_rng(standard_pipeline, astronaut)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def _check_global_rng(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    random.seed(11)
    np.random.seed(11)
    expected_py = random.random()
    expected_np = np.random.random()
    random.seed(11)
    np.random.seed(11)
    for epoch in range(5):
        standard_pipeline.apply({"image": astronaut}, key="a", epoch=epoch)
    assert random.random() == expected_py
    assert np.random.random() == expected_np


def test_targets_travel_with_the_image(astronaut: np.ndarray) -> None:
    spec = {
        "schema": 1,
        "name": "det",
        "targets": {
            "mask": True,
            "bboxes": {"format": "pascal_voc", "label_fields": ["labels"]},
            "keypoints": {"format": "xy", "label_fields": ["kp_labels"]},
        },
        "ops": [{"op": "HorizontalFlip", "p": 1.0}],
    }
    pipe = augledger.compile(augledger.parse_spec(spec))
    mask = np.zeros(astronaut.shape[:2], dtype=np.uint8)
    mask[10:20, 5:15] = 1
    sample = {
        "image": astronaut,
        "mask": mask,
        "bboxes": [[5, 10, 15, 20]],
        "labels": ["face"],
        "keypoints": [[5.0, 10.0]],
        "kp_labels": ["eye"],
    }
    out = pipe.apply(sample, key="a", epoch=0).sample
    width = astronaut.shape[1]
    assert np.array_equal(out["image"], astronaut[:, ::-1])
    assert np.array_equal(out["mask"], mask[:, ::-1])
    assert np.allclose(out["bboxes"], [[width - 15, 10, width - 5, 20]])
    assert list(out["labels"]) == ["face"]
    assert np.allclose(out["keypoints"], [[width - 1 - 5.0, 10.0]])  # keypoints flip about pixel centres


def test_unannotated_image_through_a_box_pipeline(astronaut: np.ndarray) -> None:
    """An image without boxes (a preview, an unlabelled sample) gets the same pixels as with no boxes."""
    spec = {
        "schema": 1,
        "name": "det",
        "targets": {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}, "keypoints": {"format": "xy"}},
        "ops": [{"op": "HorizontalFlip", "p": 0.5}, {"op": "Affine", "p": 1.0, "params": {"rotate": [-30, 30]}}],
    }
    pipe = augledger.compile(augledger.parse_spec(spec))
    bare = pipe.apply({"image": astronaut}, key="a", epoch=3)
    assert set(bare.sample) == {"image"}
    empty = pipe.apply({"image": astronaut, "bboxes": [], "labels": [], "keypoints": []}, key="a", epoch=3)
    assert bare.sample["image"].tobytes() == empty.sample["image"].tobytes()
    assert bare.record.to_json() == empty.record.to_json()
    assert not np.array_equal(bare.sample["image"], astronaut)
    with pytest.raises(SampleError, match=r"has bboxes but not their label field\(s\) \['labels'\]"):
        pipe.apply({"image": astronaut, "bboxes": [[1, 2, 3, 4]]}, key="a", epoch=0)
    with pytest.raises(SampleError, match=r"has label field\(s\) \['labels'\] but no 'bboxes'"):
        pipe.apply({"image": astronaut, "labels": ["x"]}, key="a", epoch=0)


def test_undeclared_targets_and_bad_samples_are_rejected(standard_pipeline: augledger.Pipeline, astronaut: np.ndarray) -> None:
    with pytest.raises(SampleError, match=r"carries \['bboxes'\], which the spec does not declare; declare them under 'targets'"):
        standard_pipeline.apply({"image": astronaut, "bboxes": [[0, 0, 1, 1]]}, key="a", epoch=0)
    with pytest.raises(SampleError, match=r"must be a dict with an 'image' array"):
        standard_pipeline.apply({"img": astronaut}, key="a", epoch=0)
    with pytest.raises(SampleError, match=r"'image' must be a HxW or HxWxC numpy array; got list"):
        standard_pipeline.apply({"image": [[1, 2]]}, key="a", epoch=0)


def test_bad_annotation_is_a_sample_error(astronaut: np.ndarray) -> None:
    spec = {"schema": 1, "name": "d", "targets": {"bboxes": {"format": "pascal_voc"}}, "ops": [{"op": "HorizontalFlip"}]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    with pytest.raises(SampleError, match=r"sample 'a' \(epoch 0\) could not be augmented"):
        pipe.apply({"image": astronaut, "bboxes": [[50, 50, 10, 10]]}, key="a", epoch=0)


def test_stream_matches_apply(standard_pipeline: augledger.Pipeline, photos: list[np.ndarray]) -> None:
    items = [(k, {"image": photos[i % len(photos)]}) for i, k in enumerate(KEYS)]
    streamed = {r.record.key: r.record for r in standard_pipeline.stream(iter(items), epoch=1)}
    for key, sample in reversed(items):
        assert standard_pipeline.apply(sample, key=key, epoch=1).record == streamed[key]


def test_golden_outputs(astronaut: np.ndarray) -> None:
    """Output bytes for the golden spec are pinned for the environment stamp they were made under."""
    golden = json.loads((GOLDEN / "outputs_v1.json").read_text())
    recorded_env = EnvStamp.from_dict(golden["env"])
    # Pixels depend on the kernels and the RNG, not on the file decoders (unused here) or augledger's version.
    differences = recorded_env.differences(EnvStamp.current())
    diff = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in differences.items() if k not in ("pillow", "simplejpeg", "augledger"))
    if diff:
        pytest.skip(f"golden outputs were recorded under another environment ({diff})")
    pipe = augledger.compile(augledger.load_spec(GOLDEN / "spec_v1.yaml"))
    for row in golden["records"]:
        got = pipe.apply(golden_sample(astronaut), key=row["key"], epoch=row["epoch"], digests=True).record
        assert got.to_dict() == row


def golden_sample(astronaut: np.ndarray) -> dict[str, Any]:
    mask = np.zeros(astronaut.shape[:2], dtype=np.uint8)
    mask[20:60, 30:70] = 1
    return {"image": astronaut, "mask": mask, "bboxes": [[30, 20, 70, 60]], "labels": [1]}


def make_golden_outputs(astronaut: np.ndarray) -> dict[str, Any]:  # pragma: no cover - run by hand
    pipe = augledger.compile(augledger.load_spec(GOLDEN / "spec_v1.yaml"))
    records = [
        pipe.apply(golden_sample(astronaut), key=f"golden/{k}.png", epoch=e, digests=True).record.to_dict()
        for k in range(3)
        for e in range(3)
    ]
    return {"env": EnvStamp.current().to_dict(), "records": records}
