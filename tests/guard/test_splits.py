"""Group-aware splits: whole groups to one split, by a hash that ignores order, process and other groups;
``run --split-file`` augments only the keys marked train."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from augledger.errors import SourceError, SpecError
from augledger.run.splits import (
    assign_splits,
    groups_from_file,
    groups_from_regex,
    load_split_selection,
    parse_fractions,
    read_split_file,
    split_of,
    split_source,
    write_split_file,
)
from helpers import SCRIPT, SPEC

FRACTIONS = "train=0.8,val=0.1,test=0.1"


def _cli(*args: str, hashseed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONHASHSEED": hashseed}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 patients with 2 scans each: real photo tiles, ``patientNN/scanM.png``."""
    import cv2
    from skimage import data

    root = tmp_path_factory.mktemp("patients")
    photo = data.astronaut()
    for p in range(12):
        for s in range(2):
            folder = root / f"patient{p:02d}"
            folder.mkdir(exist_ok=True)
            y, x = 17 * p + 5 * s, 29 * p + 11 * s
            cv2.imwrite(str(folder / f"scan{s}.png"), photo[y:y + 32, x:x + 32, ::-1])
    return root


def test_no_group_straddles_splits(source: Path) -> None:
    groups, splits = split_source(source, FRACTIONS, group_by=r"^(patient\d+)/")
    assert len(groups) == 24 and len(set(groups.values())) == 12
    per_group: dict[str, set[str]] = {}
    for key, group in groups.items():
        per_group.setdefault(group, set()).add(splits[key])
    assert all(len(s) == 1 for s in per_group.values()), per_group
    named, _ = split_source(source, FRACTIONS, group_by=r"(?P<group>patient\d+)/(scan)\d")
    assert named == groups


def test_assignment_ignores_input_order_and_other_groups() -> None:
    fractions = parse_fractions(FRACTIONS)
    groups = {f"k{i}": f"g{i % 300}" for i in range(900)}
    first = assign_splits(groups, fractions, salt="s")
    items = list(groups.items())
    random.Random(1).shuffle(items)
    assert assign_splits(dict(items), fractions, salt="s") == first
    more = {**groups, **{f"new{i}": f"h{i}" for i in range(500)}}  # new groups never move old ones
    assert {k: v for k, v in assign_splits(more, fractions, salt="s").items() if k in groups} == first
    assert parse_fractions("test=0.1,val=0.1,train=0.8") == fractions  # the order they are listed in does not matter
    other_salt = assign_splits(groups, fractions, salt="t")
    assert other_salt != first


def test_the_assignment_is_the_documented_hash() -> None:
    fractions = {"train": 0.5, "val": 0.5}
    for group in ("a", "patient-7", "ü"):
        digest = hashlib.sha256(json.dumps(["salt", group], ensure_ascii=False, separators=(",", ":")).encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2.0**64
        assert split_of(group, fractions, salt="salt") == ("train" if point < 0.5 else "val")


@pytest.mark.parametrize("fractions", [{"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 0.5, "test": 0.5}])
def test_fractions_are_respected_on_many_groups(fractions: dict[str, float]) -> None:
    n = 20_000
    counts = {name: 0 for name in fractions}
    for i in range(n):
        counts[split_of(f"group-{i}", fractions)] += 1
    for name, share in fractions.items():
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts[name] - n * share) < 4 * sigma, (name, counts)


@pytest.mark.parametrize(("text", "message"), [
    ("train=0.8,val=0.1", "must sum to 1; they sum to 0.9"),
    ("train=0.8,val=0.1,test=0.1000001", "must sum to 1"),
    ("train=0.9,dev=0.1", "unknown split name.*'dev'.*train, val, test, predict"),
    ("val=0.5,test=0.5", "train is missing"),
    ("train=0.5,train=0.5", "'train' is given twice"),
    ("train=lots", "must be a number"),
    ("train=1.5,val=-0.5", r"must be a number in \[0, 1\]"),
    ("train", "NAME=FRACTION"),
])
def test_bad_fractions(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_fractions(text)
    assert caught.value.location == "--fractions"


def test_fractions_may_miss_by_float_error_only() -> None:
    assert parse_fractions("train=0.7,val=0.2,test=0.1") == {"train": 0.7, "val": 0.2, "test": 0.1}


def test_group_regex_errors() -> None:
    with pytest.raises(SpecError, match="one capture group"):
        groups_from_regex(["a/b.png"], r"^\w+/")
    with pytest.raises(SpecError, match="one capture group"):
        groups_from_regex(["a/b.png"], r"^(\w+)/(\w+)")
    with pytest.raises(SpecError, match="not a regular expression"):
        groups_from_regex(["a/b.png"], r"^(\w+")
    with pytest.raises(SourceError, match=r"key 'loose.png' does not match --group-by '\^\(patient\\\\d\+\)/'"):
        groups_from_regex(["patient1/a.png", "loose.png"], r"^(patient\d+)/")
    with pytest.raises(SourceError, match=r"captures nothing in key 'x\.png'"):
        groups_from_regex(["x.png"], r"^(\d*)")


def test_groups_file(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("key,group\na.png,p1\nb.png,p1\nc.png,p2\nextra.png,p3\n")
    assert groups_from_file(path, ["a.png", "b.png", "c.png"]) == {"a.png": "p1", "b.png": "p1", "c.png": "p2"}
    with pytest.raises(SourceError, match=r"no row for 1 source key\(s\): 'd.png'"):
        groups_from_file(path, ["a.png", "d.png"])
    path.write_text("key,subject\na.png,p1\n")
    with pytest.raises(SourceError, match=r"lacks the column.*group"):
        groups_from_file(path, ["a.png"])


def test_split_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = write_split_file(tmp_path / "s.csv", {"b": "g2", "a": "g1"}, {"b": "val", "a": "train"})
    assert path.read_text() == "key,group,split\na,g1,train\nb,g2,val\n"
    assert read_split_file(path) == {"a": "train", "b": "val"}
    for text, message in [
        ("key,group\na,g\n", "lacks the column.*split"),
        ("name,split\na,train\n", "lacks the column.*key"),
        ("key,group,split\na,g,holdout\n", r"s.csv:2: key 'a' has split 'holdout'; use one of train, val, test, predict"),
        ("key,group,split\na,g,train\na,g,val\n", r"s.csv:3: key 'a' appears twice"),
        ("key,group,split\n,g,train\n", "s.csv:2: empty key"),
    ]:
        path.write_text(text)
        with pytest.raises(SourceError, match=message):
            read_split_file(path)
    with pytest.raises(SourceError, match="does not exist"):
        read_split_file(tmp_path / "none.csv")


def test_selection_needs_every_source_key(tmp_path: Path) -> None:
    path = write_split_file(tmp_path / "s.csv", {"a": "g", "b": "h"}, {"a": "train", "b": "test"})
    selection = load_split_selection(path)
    assert selection.select(["a", "b"]) == ["a"]
    assert selection.sha256 == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SourceError, match=r"no row for 2 source key\(s\): 'c', 'd'"):
        selection.select(["a", "c", "d"])
    with pytest.raises(SourceError, match="marks none of the 1 source keys train"):
        selection.select(["b"])


def test_cli_split_is_stable_across_hash_seeds(source: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    out = _cli("split", str(source), "--group-by", r"^(patient\d+)/", "--fractions", FRACTIONS, "-o", str(a), hashseed="1")
    assert out.returncode == 0, out.stderr
    assert f"{a}: 24 keys in 12 groups" in out.stdout and "train" in out.stdout and "test" in out.stdout
    out = _cli("split", str(source), "--group-by", r"^(patient\d+)/", "--fractions", "test=0.1,val=0.1,train=0.8",
               "-o", str(b), "--json", hashseed="4242")
    assert out.returncode == 0, out.stderr
    assert a.read_bytes() == b.read_bytes()
    summary = json.loads(out.stdout)
    assert summary["keys"] == 24 and summary["groups"] == 12
    assert sum(s["keys"] for s in summary["splits"].values()) == 24 and list(summary["splits"]) == ["train", "val", "test"]
    in_process = split_source(source, FRACTIONS, group_by=r"^(patient\d+)/")[1]
    assert read_split_file(a) == in_process


def test_cli_split_usage_errors(source: Path, tmp_path: Path) -> None:
    out = _cli("split", str(source), "--group-by", r"^(patient\d+)/", "--fractions", "train=0.8,val=0.1", "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2 and "must sum to 1" in out.stderr
    out = _cli("split", str(source), "--group-by", r"^(cat\d+)/", "--fractions", FRACTIONS, "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 1 and "does not match --group-by" in out.stderr and "patient00/scan0.png" in out.stderr
    out = _cli("split", str(source), "--fractions", FRACTIONS, "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2 and "exactly one of --group-by" in out.stderr
    assert not (tmp_path / "x.csv").exists()


def test_run_with_a_split_file_augments_only_train_keys(source: Path, tmp_path: Path) -> None:
    from augledger.ledger.parquet import read_ledger

    spec = tmp_path / "aug.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    splits_csv = tmp_path / "splits.csv"
    assert _cli("split", str(source), "--group-by", r"^(patient\d+)/", "--fractions", "train=0.5,val=0.5",
                "-o", str(splits_csv)).returncode == 0
    splits = read_split_file(splits_csv)
    train_keys = sorted(k for k, s in splits.items() if s == "train")
    assert 0 < len(train_keys) < 24
    out = _cli("run", str(spec), "--source", str(source), "--out", str(tmp_path / "o"), "--workers", "0",
               "--split-file", str(splits_csv))
    assert out.returncode == 0, out.stderr
    assert sorted({r["key"] for r in read_ledger(tmp_path / "o").rows()}) == train_keys
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    digest = "sha256:" + hashlib.sha256(splits_csv.read_bytes()).hexdigest()
    assert manifest["split"] == {"sha256": digest, "split": "train"}
    assert manifest["source"]["images"] == len(train_keys)
    assert json.loads((tmp_path / "o" / "run.json").read_text())["split_file"] == str(splits_csv.resolve())
    # Without the option the manifest has no split entry (existing folders keep their identity) ...
    plain = _cli("run", str(spec), "--source", str(source), "--out", str(tmp_path / "p"), "--workers", "0")
    assert plain.returncode == 0 and "split" not in json.loads((tmp_path / "p" / "manifest.json").read_text())
    # ... and a folder made with one split file refuses another.
    splits_csv.write_text(splits_csv.read_text().replace(",val\n", ",train\n"))
    again = _cli("run", str(spec), "--source", str(source), "--out", str(tmp_path / "o"), "--workers", "0",
                 "--split-file", str(splits_csv))
    assert again.returncode == 1 and "split" in again.stderr


def test_run_refuses_a_split_file_that_lacks_source_keys(source: Path, tmp_path: Path) -> None:
    spec = tmp_path / "aug.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    partial = tmp_path / "splits.csv"
    partial.write_text("key,group,split\npatient00/scan0.png,patient00,train\n")
    out = _cli("run", str(spec), "--source", str(source), "--out", str(tmp_path / "o"), "--workers", "0",
               "--split-file", str(partial))
    assert out.returncode == 1
    assert "has no row for 23 source key(s): 'patient00/scan1.png', 'patient01/scan0.png'" in out.stderr
    assert not (tmp_path / "o").exists()


def test_split_is_importable_without_hash_seed_effects() -> None:
    code = ("from augledger.run.splits import split_of; "
            "print([split_of(f'g{i}', {'train': 0.8, 'test': 0.2}) for i in range(50)])")
    results = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("0", "1", "987")}
    assert len(results) == 1


def test_a_hand_edited_split_file_with_a_straddling_group_is_refused(tmp_path: Path) -> None:
    from augledger.errors import SourceError
    from augledger.run.splits import read_split_file

    path = tmp_path / "splits.csv"
    path.write_text("key,group,split\np1/a.png,p1,val\np1/b.png,p1,train\np2/c.png,p2,train\n")
    with pytest.raises(SourceError, match=r"splits.csv:3: group 'p1' is in val \(key 'p1/a.png'\) and in train"):
        read_split_file(path)
    path.write_text("key,split\np1/a.png,val\np1/b.png,train\n")  # no group column: nothing to check it by
    assert read_split_file(path) == {"p1/a.png": "val", "p1/b.png": "train"}
