"""The op contract, generated from ``describe_ops()`` of every available modality.

For every op (compositions aside: they have no behaviour of their own, ``test_image_backend.py``
covers them), a spec with that op at ``p=1`` and its ``example`` params, run on the modality's
``example_sample()``:

(a) is valid through ``augledger.spec`` (as JSON text) and compiles;
(b) is deterministic per (key, epoch): the same output and record twice in this process, and in a
    fresh interpreter (one subprocess per modality computes every op's digests);
(c) replays from its record to the same output;
(d) leaves the caller's global ``random`` and ``numpy.random`` state untouched (the autouse fixture
    in ``tests/conftest.py`` checks every test too; this names the op);
(e) matches the golden output digest in ``tests/golden/ops_<modality>.json`` (key ``golden``,
    epoch 0) when the environment matches the one the file was recorded in.

A backend joins by being registered: a modality whose optional dependencies are missing is left
out of the parametrisation. After an intended change of outputs (a new op, new example params, a
library upgrade), regenerate the golden file and review its diff::

    .venv/bin/python tests/ops/test_contract.py --regenerate image
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import augledger
from augledger.env import EnvStamp
from augledger.errors import BackendError
from augledger.ops.registry import get_backend, modalities
from augledger.record import sample_digest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
KEY, EPOCH = "contract/k", 1


def available() -> list[str]:
    out = []
    for modality in modalities():
        try:
            get_backend(modality)
        except BackendError:  # an optional extra not installed: its ops are not this environment's
            continue
        out.append(modality)
    return out


def leaf_ops(modality: str) -> list[dict[str, Any]]:
    return [e for e in get_backend(modality).describe_ops() if not e.get("composition")]


CASES = [pytest.param(m, e, id=f"{m}-{e['op']}") for m in available() for e in leaf_ops(m)]


def compile_op(modality: str, entry: dict[str, Any]) -> augledger.Pipeline:
    document = {"schema": 1, "name": f"contract-{entry['op']}", "modality": modality,
                "targets": entry.get("example_targets", {}), "ops": [{"op": entry["op"], "p": 1.0, "params": entry["example"]}]}
    # The op name and params must travel as JSON data, as a spec file holds them.
    return augledger.compile(augledger.loads_spec(json.dumps(document), format="json"))


def op_digests(modality: str, key: str, epoch: int) -> dict[str, dict[str, str]]:
    """``{op: {"output": sample_digest, "record": record JSON}}`` for every leaf op of ``modality``."""
    backend = get_backend(modality)
    out = {}
    for entry in leaf_ops(modality):
        result = compile_op(modality, entry).apply(backend.example_sample(), key=key, epoch=epoch)
        out[entry["op"]] = {"output": sample_digest(result.sample), "record": result.record.to_json()}
    return out


def env_of(modality: str) -> dict[str, Any]:
    """What the pixels depend on: NumPy (the RNG), the platform, and the backend's libraries."""
    core = EnvStamp.current(None)
    return {"numpy": core.numpy, "platform": core.platform, "backends": get_backend(modality).versions()}


@pytest.mark.parametrize("modality", available())
def test_describe_ops_is_well_formed(modality: str) -> None:
    backend = get_backend(modality)
    entries = backend.describe_ops()
    names = [e["op"] for e in entries]
    assert len(names) == len(set(names)), "an op is described twice"
    assert set(names) == set(backend.op_names()), "describe_ops and op_names disagree"
    json.dumps(entries, allow_nan=False)  # JSON data only
    for e in entries:
        assert e["modality"] == modality and isinstance(e["params"], dict) and isinstance(e["example"], dict), e["op"]
        required = set(e.get("required", ()))
        assert not required & set(e["params"]), f"{e['op']}: a required param has a default"
        assert required <= set(e["example"]), f"{e['op']}: the example misses required params {required - set(e['example'])}"
        assert set(e["example"]) <= set(e["params"]) | required, f"{e['op']}: the example names unknown params"
    one, two = backend.example_sample(), backend.example_sample()
    assert sample_digest(one) == sample_digest(two), "example_sample is not deterministic"


@pytest.mark.parametrize(("modality", "entry"), CASES)
def test_op_contract(modality: str, entry: dict[str, Any]) -> None:
    pipe = compile_op(modality, entry)  # (a)
    backend = get_backend(modality)
    sample = backend.example_sample()
    input_digest = sample_digest(sample)
    py_state, np_state = random.getstate(), np.random.get_state()
    first = pipe.apply(sample, key=KEY, epoch=EPOCH, digests=True)
    second = pipe.apply(backend.example_sample(), key=KEY, epoch=EPOCH, digests=True)
    # (d) the caller's generators, as they were
    assert random.getstate() == py_state, f"{entry['op']} changed the global `random` state"
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], f"{entry['op']} changed numpy's global state"
    # (b) deterministic per (key, epoch), and the input left as it was
    assert sample_digest(sample) == input_digest, f"{entry['op']} modified its input"
    assert sample_digest(first.sample) == sample_digest(second.sample)
    assert first.record == second.record
    assert first.record.ops, f"{entry['op']} at p=1 applied nothing the record shows"
    # (c) replayable from the record alone
    replayed = pipe.replay(backend.example_sample(), first.record)
    assert sample_digest(replayed.sample) == sample_digest(first.sample)


@pytest.mark.parametrize("modality", available())
def test_a_fresh_interpreter_gives_the_same_outputs_and_records(modality: str) -> None:
    # One subprocess for all of a modality's ops, running while this process computes its own.
    child = subprocess.Popen(
        [sys.executable, __file__, "--digests", modality, KEY, str(EPOCH)], stdout=subprocess.PIPE, text=True
    )
    here = op_digests(modality, KEY, EPOCH)
    stdout, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    there = json.loads(stdout)
    assert sorted(there) == sorted(here)
    differ = [op for op in here if here[op] != there[op]]
    assert not differ, f"outputs or records differ in a fresh interpreter for {differ}"


@pytest.mark.parametrize("modality", available())
def test_golden_output_digests(modality: str) -> None:
    path = GOLDEN / f"ops_{modality}.json"
    assert path.is_file(), f"no golden digests for {modality}: run .venv/bin/python tests/ops/test_contract.py --regenerate {modality}"
    golden = json.loads(path.read_text())
    if golden["env"] != env_of(modality):
        pytest.skip(f"{path.name} was recorded under {golden['env']}; this is {env_of(modality)}")
    got = {op: d["output"] for op, d in op_digests(modality, "golden", 0).items()}
    missing, extra = sorted(set(got) - set(golden["digests"])), sorted(set(golden["digests"]) - set(got))
    assert not missing and not extra, f"ops added {missing} / removed {extra}: regenerate {path.name} (see this module's docstring)"
    changed = sorted(op for op in got if got[op] != golden["digests"][op])
    assert not changed, f"outputs changed for {changed}; if intended, regenerate {path.name} and review the diff"


def regenerate(modality: str) -> Path:  # pragma: no cover - run by hand
    digests = {op: d["output"] for op, d in op_digests(modality, "golden", 0).items()}
    path = GOLDEN / f"ops_{modality}.json"
    path.write_text(json.dumps({"env": env_of(modality), "key": "golden", "epoch": 0, "digests": digests},
                               indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover - the subprocess of the test above, and regeneration
    if sys.argv[1] == "--digests":
        print(json.dumps(op_digests(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif sys.argv[1] == "--regenerate":
        for name in sys.argv[2:] or available():
            print(f"wrote {regenerate(name)}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --regenerate [MODALITY ...] | --digests MODALITY KEY EPOCH")
