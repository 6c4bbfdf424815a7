"""The audio backend: determinism per (key, epoch) across processes and threads, the caller's global
RNGs untouched, replay, strict params, records, and an end-to-end offline run on WAV and FLAC files.

Every op is also in the generated contract suite (``test_contract.py``, golden ``ops_audio.json``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("audiomentations")
sf = pytest.importorskip("soundfile")

import augledger  # noqa: E402
from augledger.errors import ParamError, SampleError, UnknownOpError  # noqa: E402
from augledger.ops.audio import REFUSED, scope  # noqa: E402
from augledger.ops.audio.describe import example_sample  # noqa: E402
from augledger.ops.registry import get_backend  # noqa: E402
from augledger.record import sample_digest  # noqa: E402
from augledger.run.materialize import materialize  # noqa: E402
from augledger.run.options import RunOptions  # noqa: E402
from augledger.run.verify import verify  # noqa: E402

SPEC: dict[str, Any] = {
    "schema": 1, "name": "speech", "modality": "audio", "seed": 3,
    "ops": [
        {"op": "Gain", "p": 1.0, "params": {"min_gain_db": -6, "max_gain_db": 6}},
        {"op": "AddGaussianNoise", "p": 0.7},
        {"op": "SomeOf", "params": {"num_transforms": [1, None]}, "ops": [
            {"op": "PitchShift", "p": 1.0, "params": {"min_semitones": -2, "max_semitones": 2}},
            {"op": "TimeMask", "p": 1.0}, {"op": "LowPassFilter", "p": 1.0}]},
        {"op": "Compose", "params": {"shuffle": True}, "ops": [{"op": "Shift", "p": 1.0}, {"op": "BitCrush", "p": 0.5}]},
    ],
}


def compile_doc(doc: dict[str, Any]) -> augledger.Pipeline:
    return augledger.compile(augledger.loads_spec(json.dumps(doc), format="json"))


def outputs(pipe: augledger.Pipeline, keys: list[str], epoch: int = 0) -> dict[str, tuple[str, str]]:
    sample = example_sample()
    return {k: (sample_digest(r.sample), r.record.to_json()) for k in keys
            for r in [pipe.apply(sample, key=k, epoch=epoch)]}


KEYS = [f"clip/{i}.wav" for i in range(12)]


@pytest.fixture
def own_global_state() -> Any:
    """These tests seed the global RNGs themselves; put the session's state back afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def test_deterministic_across_fresh_interpreters_with_other_hash_seeds() -> None:
    here = outputs(compile_doc(SPEC), KEYS, epoch=2)
    code = ("import json,sys; sys.path.insert(0, sys.argv[1]); from test_audio import compile_doc, outputs, SPEC, KEYS; "
            "print(json.dumps(outputs(compile_doc(SPEC), KEYS, epoch=2)))")
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        assert {k: tuple(v) for k, v in json.loads(run.stdout).items()} == here
    assert len({d for d, _ in here.values()}) == len(KEYS), "every key should get its own draws"


def test_epochs_differ_and_the_input_is_not_modified() -> None:
    pipe, sample = compile_doc(SPEC), example_sample()
    before = sample_digest(sample)
    a, b = (pipe.apply(sample, key="k", epoch=e) for e in (0, 1))
    assert sample_digest(sample) == before
    assert sample_digest(a.sample) != sample_digest(b.sample)
    assert a.sample["sample_rate"] == 16_000 and a.sample["audio"].dtype == np.float32


@pytest.mark.usefixtures("own_global_state")
def test_threads_give_the_single_thread_bytes_and_leave_the_global_rngs_alone() -> None:
    pipe = compile_doc(SPEC)
    expected = outputs(pipe, KEYS)
    random.seed(99)
    np.random.seed(98)
    np.random.normal()  # a cached Box-Muller normal pending: the exact save/restore path
    py_state, np_state = random.getstate(), np.random.get_state()
    got: dict[str, tuple[str, str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(part: list[str]) -> None:
        try:
            barrier.wait()
            for _ in range(2):
                got.update(outputs(pipe, part))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(KEYS[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert got == expected
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


@pytest.mark.usefixtures("own_global_state")
def test_the_scope_restores_state_when_the_call_raises() -> None:
    random.seed(1)
    np.random.seed(2)
    py_state, np_state = random.getstate(), np.random.get_state()

    def boom() -> None:
        random.random()
        np.random.uniform()
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        scope.seeded(5, boom)
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert not scope.LOCK.locked()


def test_records_carry_paths_and_replay() -> None:
    pipe, sample = compile_doc(SPEC), example_sample()
    result = pipe.apply(sample, key="r", epoch=0, digests=True)
    ops = result.record.ops
    assert ops[0]["op"] == "audiomentations.Gain" and ops[0]["path"] == "ops[0]"
    assert all(op["path"].startswith("ops[") for op in ops)
    json.dumps([dict(o) for o in ops], allow_nan=False)
    again = pipe.replay(example_sample(), result.record)
    assert sample_digest(again.sample) == sample_digest(result.sample)


def test_seven_band_eq_records_its_bands() -> None:
    pipe = compile_doc({**SPEC, "ops": [{"op": "SevenBandParametricEQ", "p": 1.0}]})
    (op,) = pipe.apply(example_sample(), key="k", epoch=0).record.ops
    assert len(op["params"]["bands"]) == 7 and set(op["params"]["bands"][0]) == {"center_freq", "gain_db", "q_factor"}


def test_resolved_form_fills_every_default_and_p() -> None:
    pipe = compile_doc({**SPEC, "ops": [{"op": "audiomentations.Gain", "params": {"min_gain_db": -3}}]})
    assert pipe.resolved_spec["ops"] == [{"op": "audiomentations.Gain", "p": 0.5,
                                          "params": {"min_gain_db": -3.0, "max_gain_db": 12.0}}]
    same = compile_doc({**SPEC, "ops": [{"op": "Gain", "p": 0.5, "params": {"min_gain_db": -3.0, "max_gain_db": 12}}]})
    assert same.fingerprint == pipe.fingerprint


@pytest.mark.parametrize(("op", "location", "words"), [
    ({"op": "Gain", "params": {"min_gain_d": 1}}, "ops[1].params.min_gain_d", "did you mean 'min_gain_db'"),
    ({"op": "Gain", "params": {"min_gain_db": "1"}}, "ops[1].params.min_gain_db", "must be a number"),
    ({"op": "Gain", "params": {"min_gain_db": True}}, "ops[1].params.min_gain_db", "must be a number"),
    ({"op": "Gain", "params": {"min_gain_db": 9, "max_gain_db": 1}}, "ops[1].params.min_gain_db", "min <= max"),
    ({"op": "Gain", "params": {"p": 1}}, "ops[1].params.p", "beside 'op'"),
    ({"op": "BitCrush", "params": {"min_bit_depth": 4.5}}, "ops[1].params.min_bit_depth", "an integer"),
    ({"op": "Shift", "params": {"shift_unit": "sec"}}, "ops[1].params.shift_unit", "'seconds'"),
    ({"op": "RepeatPart", "params": {"part_transform": None}}, "ops[1].params.part_transform", "unknown param"),
    ({"op": "SomeOf", "params": {"num_transforms": 3}, "ops": [{"op": "Gain"}]}, "ops[1].params.num_transforms", "[0, 1]"),
    ({"op": "OneOf", "params": {"weights": [1]}, "ops": [{"op": "Gain"}, {"op": "Reverse"}]}, "ops[1].params.weights", "2 non-negative"),
    ({"op": "Gain", "ops": [{"op": "Reverse"}]}, "ops[1].ops", "not a composition"),
])
def test_param_errors_name_the_location(op: dict[str, Any], location: str, words: str) -> None:
    with pytest.raises(ParamError) as info:
        compile_doc({**SPEC, "ops": [{"op": "Gain"}, op]})
    assert info.value.location == location and words in str(info.value)


def test_refused_and_unknown_ops_say_why() -> None:
    for name, reason in REFUSED.items():
        with pytest.raises(UnknownOpError, match="not allowed") as info:
            compile_doc({**SPEC, "ops": [{"op": name}]})
        assert reason in str(info.value)
    with pytest.raises(UnknownOpError, match="did you mean 'Gain'"):
        compile_doc({**SPEC, "ops": [{"op": "Gian"}]})
    with pytest.raises(ParamError, match="no targets"):
        compile_doc({**SPEC, "targets": {"mask": True}})


def test_bad_samples_are_refused_by_name() -> None:
    pipe = compile_doc(SPEC)
    audio = example_sample()["audio"]
    for bad in ({"audio": audio}, {"audio": audio.astype(np.float64), "sample_rate": 16000},
                {"audio": audio, "sample_rate": 16000.0}, {"audio": audio, "sample_rate": 16000, "label": 1}):
        with pytest.raises(SampleError, match="'k'"):
            pipe.apply(bad, key="k", epoch=0)


def test_import_augledger_does_not_import_audiomentations() -> None:
    code = "import sys, augledger; print('audiomentations' in sys.modules or 'soundfile' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_describe_ops_examples_cover_every_op() -> None:
    names = {e["op"] for e in get_backend("audio").describe_ops()}
    assert {"Gain", "PitchShift", "TimeStretch", "Compose", "OneOf", "SomeOf"} <= names
    assert not names & set(REFUSED)


# -- offline, end to end ---------------------------------------------------------------------------

def write_sources(root: Path) -> None:
    t = np.arange(12_000) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", tone, 16_000, subtype="PCM_16")
    sf.write(root / "b.wav", tone[:8000] * 0.8, 8_000, subtype="PCM_16")
    sf.write(root / "sub" / "c.flac", np.stack([tone, tone * 0.5], axis=1), 22_050, subtype="PCM_24")
    sf.write(root / "d.wav", tone, 16_000, subtype="FLOAT")
    (root / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk-not-audio")


def test_run_one_and_two_workers_byte_identical_and_verified(tmp_path: Path) -> None:
    write_sources(tmp_path / "src")
    pipe = compile_doc(SPEC)
    for workers in (1, 2):
        materialize(pipe, tmp_path / "src", tmp_path / f"o{workers}", options=RunOptions(copies=2, workers=workers))
    one, two = tmp_path / "o1", tmp_path / "o2"
    files = sorted(p.relative_to(one).as_posix() for p in (one / "augmented").rglob("*") if p.is_file())
    assert files == [f"augmented/{k}.c{c}.{k.rsplit('.', 1)[1]}" for k in ("a.wav", "b.wav", "d.wav", "sub/c.flac") for c in (0, 1)]
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (one / "manifest.json").read_bytes() == (two / "manifest.json").read_bytes()
    for key in ("a.wav", "b.wav", "d.wav", "sub/c.flac"):
        src, out = sf.info(tmp_path / "src" / key), sf.info(one / "augmented" / f"{key}.c0.{key.rsplit('.', 1)[1]}")
        assert (out.format, out.subtype, out.samplerate, out.channels) == (src.format, src.subtype, src.samplerate, src.channels)
    report = verify(one)
    assert report.ok, report.problems
    import pyarrow.parquet as pq

    rows = {(r["key"], r["epoch"]): r for r in pq.read_table(one / "ledger.parquet").to_pylist()}
    assert rows[("broken.wav", 0)]["status"] == "quarantined" and "corrupt" in rows[("broken.wav", 0)]["error"]
    assert json.loads(rows[("b.wav", 0)]["ops"])[0]["op"] == "audiomentations.Gain"
