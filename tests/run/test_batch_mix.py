"""Batch mixing (MixUp, CutMix) in online training: drawn from the batch, the same for every layout, ledgered, verified.

The mixed batches are compared with a reference built without any DataLoader: ``Pipeline.apply``
per sample, then :func:`draw_mix` and the formulas written out here, so a mixer that drew from a
worker's state, mixed already-mixed partners or recorded other values than it applied fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import augledger
from augledger import SampleError
from augledger.ledger import read_ledger, write_ledger
from augledger.run.batch_mix import batch_identity, check_mix_rows, cutmix_box, draw_mix, mix_record
from augledger.run.verify import verify_online_ledger
from augledger.torch import AugmentedDataset, CutMix, EpochSampler, LoaderError, MixUp, OnlineLedger

N = 22  # not a multiple of the batch size: the last batch is partial
BATCH = 8
CLASSES = 5
HW = (12, 16)  # not square: CutMix's height and width must not be swapped
SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "mix-test",
    "seed": 5,
    "ops": [{"op": "HorizontalFlip", "p": 0.5}, {"op": "RandomBrightnessContrast", "p": 0.9}],
}


def image_for(i: int) -> np.ndarray:
    return np.random.default_rng(500 + i).integers(0, 256, size=(*HW, 3), dtype=np.uint8)


def key_for(i: int) -> str:
    return f"synthetic/{i:03d}.png"


class ImageLabels(Dataset[tuple[np.ndarray, int]]):
    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return image_for(i), i % CLASSES


def make_mixer(kind: str, **changes: Any) -> MixUp | CutMix:
    args: dict[str, Any] = {"alpha": 0.4 if kind == "MixUp" else 1.0, "p": 0.8, "num_classes": CLASSES, **changes}
    return MixUp(**args) if kind == "MixUp" else CutMix(**args)


@pytest.fixture(scope="module")
def pipe() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(SPEC))


def reference(pipe: augledger.Pipeline, kind: str, epoch: int, order: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The expected batches, from Pipeline.apply, draw_mix and the MixUp/CutMix formulas."""
    out = []
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        images = [pipe.apply({"image": image_for(i)}, key=key_for(i), epoch=epoch).sample["image"] for i in chunk]
        onehots = [np.eye(CLASSES)[i % CLASSES] for i in chunk]
        draws = draw_mix(f"augledger.{kind}", alpha=0.4 if kind == "MixUp" else 1.0, p=0.8, fingerprint=pipe.fingerprint,
                         seed=pipe.seed, batch=batch_identity([(epoch, key_for(i)) for i in chunk]), size=len(chunk),
                         image_hw=HW)
        mixed, labels = [], []
        for j, d in enumerate(draws):
            if kind == "MixUp":
                lam = np.float32(d.lam)
                mixed.append(images[j].astype(np.float32) * lam + images[d.partner].astype(np.float32) * (np.float32(1) - lam))
            else:
                img = images[j].copy()
                if d.box is not None:
                    x0, y0, x1, y1 = d.box
                    img[y0:y1, x0:x1] = images[d.partner][y0:y1, x0:x1]
                mixed.append(img)
            labels.append((onehots[j] * d.lam + onehots[d.partner] * (1 - d.lam)).astype(np.float32))
        out.append((np.stack(mixed), np.stack(labels)))
    return out


def run(pipe: augledger.Pipeline, kind: str, epochs: list[int], ledger_dir: Path | None = None,
        **loader_args: Any) -> tuple[dict[int, list[tuple[torch.Tensor, torch.Tensor]]], list[dict[str, Any]]]:
    ledger = OnlineLedger(ledger_dir, pipe) if ledger_dir is not None else None
    dataset = AugmentedDataset(ImageLabels(), pipe, key=key_for, ledger=ledger, batch_mix=make_mixer(kind))
    sampler = EpochSampler(dataset, shuffle=True, seed=3)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, **loader_args)
    got = {}
    for epoch in epochs:
        sampler.set_epoch(epoch)
        got[epoch] = [(images.clone(), labels.clone()) for images, labels in loader]
    del loader
    rows = read_ledger(ledger.merge()).rows() if ledger is not None else []
    return got, rows


# -- the same mixed batches for every layout, and the reference ----------------------------------------


@pytest.mark.parametrize("kind", ["MixUp", "CutMix"])
@pytest.mark.parametrize(("num_workers", "persistent"), [(2, False), (2, True)])
def test_mixed_batches_and_ledger_identical_for_every_worker_layout(
    pipe: augledger.Pipeline, tmp_path: Path, kind: str, num_workers: int, persistent: bool
) -> None:
    serial, serial_rows = run(pipe, kind, [0, 1], tmp_path / "serial", num_workers=0)
    parallel, parallel_rows = run(pipe, kind, [0, 1], tmp_path / "parallel", num_workers=num_workers,
                                  persistent_workers=persistent)
    for epoch in (0, 1):
        want = reference(pipe, kind, epoch, [i for _, i in EpochSampler(N, shuffle=True, seed=3, epoch=epoch)])
        assert len(serial[epoch]) == len(parallel[epoch]) == len(want) == 3
        for (si, sl), (pi, pl), (wi, wl) in zip(serial[epoch], parallel[epoch], want, strict=True):
            assert torch.equal(si, pi) and torch.equal(sl, pl)
            assert np.array_equal(si.numpy(), wi) and np.array_equal(sl.numpy(), wl)
            assert si.dtype == (torch.float32 if kind == "MixUp" else torch.uint8)
            assert sl.dtype == torch.float32 and torch.allclose(sl.sum(dim=1), torch.ones(len(sl)))
    assert serial_rows == parallel_rows and len(serial_rows) == 2 * N
    mixes = [json.loads(r["mix"]) for r in serial_rows]
    assert {m["op"] for m in mixes} == {f"augledger.{kind}"}
    assert any(m["applied"] for m in mixes) and not all(m["applied"] for m in mixes)  # p=0.8


def test_pairing_and_lambdas_change_with_the_epoch_and_the_batch(pipe: augledger.Pipeline) -> None:
    keys = [key_for(i) for i in range(BATCH)]

    def draws(epoch: int, order: list[str]) -> list[Any]:
        return draw_mix("augledger.MixUp", alpha=0.4, p=1.0, fingerprint=pipe.fingerprint, seed=pipe.seed,
                        batch=batch_identity([(epoch, k) for k in order]), size=BATCH)

    assert draws(0, keys) == draws(0, keys)
    assert [d.partner for d in draws(0, keys)] != [d.partner for d in draws(1, keys)]
    assert [d.lam for d in draws(0, keys)] != [d.lam for d in draws(1, keys)]
    assert [d.lam for d in draws(0, keys)] != [d.lam for d in draws(0, keys[::-1])]


def test_lambda_follows_beta_and_p_is_per_sample() -> None:
    lams, applied = [], []
    for b in range(300):
        for d in draw_mix("augledger.MixUp", alpha=0.2, p=0.5, fingerprint="sha256:x", seed=0,
                          batch=batch_identity([(0, f"{b}/{i}") for i in range(64)]), size=64):
            applied.append(d.applied)
            if d.applied:
                lams.append(d.lam)
    values = np.array(lams)
    assert abs(np.mean(applied) - 0.5) < 0.02
    assert abs(values.mean() - 0.5) < 0.01
    assert abs(values.var() - 1 / (4 * (2 * 0.2 + 1))) < 0.01  # Var Beta(a, a) = 1 / (4 (2a + 1))
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_cutmix_box_inside_the_image_and_lambda_is_the_area_left(pipe: augledger.Pipeline) -> None:
    h, w = HW
    for b in range(50):
        for d in draw_mix("augledger.CutMix", alpha=1.0, p=1.0, fingerprint=pipe.fingerprint, seed=0,
                          batch=batch_identity([(b, "k")]), size=1, image_hw=HW):
            assert d.box is not None
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
            assert d.lam == 1.0 - (x1 - x0) * (y1 - y0) / (h * w)
    assert cutmix_box(0.0, 0, 0, 10, 20) == (0, 0, 10, 5)  # clipped at the corner: a quarter of the image
    # In the loaded batch: outside the box the sample's own pixels, inside its partner's.
    dataset = AugmentedDataset(ImageLabels(), pipe, key=key_for, batch_mix=make_mixer("CutMix", p=1.0))
    indices = [(0, i) for i in range(BATCH)]
    own = [pipe.apply({"image": image_for(i)}, key=key_for(i), epoch=0).sample["image"] for i in range(BATCH)]
    draws = draw_mix("augledger.CutMix", alpha=1.0, p=1.0, fingerprint=pipe.fingerprint, seed=pipe.seed,
                     batch=batch_identity([(0, key_for(i)) for i in range(BATCH)]), size=BATCH, image_hw=HW)
    for j, ((image, label), d) in enumerate(zip(dataset.__getitems__(indices), draws, strict=True)):
        assert d.box is not None
        x0, y0, x1, y1 = d.box
        inside = np.zeros(HW, dtype=bool)
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(image[inside], own[d.partner][inside]) and np.array_equal(image[~inside], own[j][~inside])
        assert label[j % CLASSES] >= d.lam - 1e-6 and abs(float(label.sum()) - 1.0) < 1e-6


def test_tensor_images_keep_their_layout_and_labels_become_tensors(pipe: augledger.Pipeline) -> None:
    def from_sample(sample: dict[str, Any], item: Any) -> dict[str, Any]:
        return {"pixels": torch.from_numpy(sample["image"]).permute(2, 0, 1).float().div(255), "y": item[1]}

    for kind in ("MixUp", "CutMix"):
        dataset = AugmentedDataset(ImageLabels(), pipe, key=key_for, from_sample=from_sample,
                                   batch_mix=make_mixer(kind, p=1.0, image="pixels", label="y"))
        batch = dataset.__getitems__([(0, i) for i in range(4)])
        assert all(b["pixels"].shape == (3, *HW) and b["pixels"].dtype == torch.float32 for b in batch)
        assert all(isinstance(b["y"], torch.Tensor) and b["y"].shape == (CLASSES,) for b in batch)


# -- the ledger: recorded, verified, tampering found ----------------------------------------------------


def test_verify_passes_and_finds_a_tampered_lambda_partner_or_batch(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    _, rows = run(pipe, "CutMix", [0], tmp_path / "ledger", num_workers=0)
    path = tmp_path / "ledger" / "ledger.parquet"
    ledger = read_ledger(path)
    assert ledger.header["format"] == 5
    report = verify_online_ledger(ledger)
    assert report.ok, report.problems
    assert verify_online_ledger(ledger, sample=5).ok

    victim = next(i for i, r in enumerate(rows) if json.loads(r["mix"])["applied"])

    def problems(edited: list[dict[str, Any]]) -> list[str]:
        out = write_ledger(edited, tmp_path / "tampered.parquet", ledger.header)
        return [f"{p.key}: {p.message}" for p in verify_online_ledger(read_ledger(out)).problems]

    def tampered(**changes: Any) -> list[str]:
        edited = [dict(r) for r in rows]
        entry = json.loads(edited[victim]["mix"])
        entry.update(changes)
        edited[victim]["mix"] = json.dumps(entry)
        return problems(edited)

    entry = json.loads(rows[victim]["mix"])
    assert any(m.startswith(rows[victim]["key"]) and "lambda" in m for m in tampered(lam=entry["lam"] * 0.9))
    assert any("is not the key at batch position" in m for m in tampered(partner="synthetic/999.png"))
    assert tampered(partner_position=(entry["partner_position"] + 1) % entry["size"])
    assert tampered(box=[0, 0, 1, 1])
    assert tampered(batch="sha256:" + "0" * 64)
    assert tampered(params={"alpha": 0.5, "p": 0.8})
    assert any("cannot be recomputed" in m for m in tampered(size="eight"))
    # A consistent forgery: a whole batch re-recorded under another identity, draws and all, is caught
    # by recomputing the identity from the batch's keys.
    forged = [dict(r) for r in rows]
    members = [r for r in forged if json.loads(r["mix"])["batch"] == entry["batch"]]
    fake = batch_identity([(9, "elsewhere")])
    draws = draw_mix("augledger.CutMix", alpha=1.0, p=0.8, fingerprint=pipe.fingerprint, seed=pipe.seed, batch=fake,
                     size=entry["size"], image_hw=HW)
    by_position = {json.loads(r["mix"])["position"]: r for r in members}
    for position, row in by_position.items():
        d = draws[position]
        row["mix"] = mix_record("augledger.CutMix", alpha=1.0, p=0.8, batch=fake, size=entry["size"], position=position,
                                draw=d, partner_key=by_position[d.partner]["key"], image_hw=HW)
    assert len(members) == entry["size"]
    assert any("batch identity is not the digest" in m for m in problems(forged))


def test_rows_without_mix_and_older_ledgers_pass() -> None:
    rows = [{"key": "a", "epoch": 0, "mix": None}, {"key": "b", "epoch": 0}]
    assert check_mix_rows(rows, rows, fingerprint="sha256:x", seed=0) == []


def test_ledger_sampling_keeps_mix_records_checkable(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    ledger = OnlineLedger(tmp_path / "sampled", pipe, sample_rate=0.5)
    dataset = AugmentedDataset(ImageLabels(), pipe, key=key_for, ledger=ledger, batch_mix=make_mixer("MixUp"))
    sampler = EpochSampler(dataset, shuffle=True, seed=3)
    for _ in DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=0):
        pass
    merged = read_ledger(ledger.merge())
    assert 0 < len(merged) < N
    assert all(r["mix"] for r in merged.rows())
    assert verify_online_ledger(merged).ok


# -- refusing misconfigurations -------------------------------------------------------------------------


def test_refuses_misconfiguration(pipe: augledger.Pipeline) -> None:
    with pytest.raises(LoaderError, match="MixUp needs num_classes="):
        MixUp(alpha=0.2)
    with pytest.raises(LoaderError, match="alpha must be a finite number > 0; got 0"):
        CutMix(alpha=0, num_classes=3)
    with pytest.raises(LoaderError, match=r"p must be a number in \[0, 1\]; got 1.5"):
        MixUp(alpha=0.2, p=1.5, num_classes=3)
    with pytest.raises(LoaderError, match="is for training only, but this dataset's split is 'val'"):
        AugmentedDataset(ImageLabels(), pipe, key=key_for, split="val", batch_mix=make_mixer("MixUp"))
    with pytest.raises(LoaderError, match=r"batch_mix must be augledger\.torch\.MixUp"):
        AugmentedDataset(ImageLabels(), pipe, key=key_for, batch_mix="mixup")  # type: ignore[arg-type]
    dataset = AugmentedDataset(ImageLabels(), pipe, key=key_for, batch_mix=make_mixer("MixUp"))
    with pytest.raises(LoaderError, match="mixes whole batches, but this dataset was indexed one sample at a time"):
        next(iter(DataLoader(dataset, batch_size=None, sampler=EpochSampler(dataset))))
    bad_label = AugmentedDataset(ImageLabels(), pipe, key=key_for, batch_mix=make_mixer("MixUp", num_classes=3))
    with pytest.raises(SampleError, match=r"expected a class index in \[0, 3\)"):
        bad_label.__getitems__([(0, i) for i in range(5)])
    dict_items = AugmentedDataset([{"image": image_for(0), "class": 1}], pipe, key=[key_for(0)],
                                  batch_mix=make_mixer("MixUp"))
    with pytest.raises(SampleError, match=r"cannot find the label of 'synthetic/000\.png' at 'label' in a dict item"):
        dict_items.__getitems__([(0, 0)])
    no_label = AugmentedDataset([image_for(0)], pipe, key=[key_for(0)], batch_mix=make_mixer("MixUp"))
    with pytest.raises(SampleError, match=r"yields a bare ndarray for 'synthetic/000\.png'; batch mixing needs items holding an image and a label"):
        no_label.__getitems__([(0, 0)])


def test_validation_split_is_never_mixed(pipe: augledger.Pipeline) -> None:
    val = AugmentedDataset(ImageLabels(), pipe, key=key_for, split="val")
    images, labels = next(iter(DataLoader(val, batch_size=BATCH)))
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert np.array_equal(images[0].numpy(), image_for(0))
