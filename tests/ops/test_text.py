"""The text backend: tokens, every op, compositions, records as replay recipes, strict params, golden outputs."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import augledger
from augledger.errors import ParamError, ReplayMismatch, SampleError, SpecError, UnknownOpError
from augledger.ops.text import BACKEND, EXAMPLE_TEXT, TEXT_OPS, apply_recorded, replay_records, tokenize
from augledger.ops.text.tokens import splice

PARAGRAPHS = (
    "Reproducible augmentation starts with a record of what was done. Every sample gets its own seed,\n"
    "derived from the pipeline's fingerprint, the run seed, the copy and the key; nothing else.\n\n"
    "  Indented line with\ttabs, numbers like 1985 and 50%, and Ünïcödé wörds: naïve café — déjà vu.\n"
    "Short.\n"
    "The model 2B was shipped in Q3; OCR may read it as ZB or 28, and rn as m in 'modern'.\n"
)

TEXTS = [PARAGRAPHS, EXAMPLE_TEXT, "one", "", "   \n\t ", "!!! ???", "日本語のテキスト と English words 混在"]


def spec(*ops: dict[str, Any], seed: int = 0) -> augledger.Pipeline:
    doc = {"schema": 1, "name": "text-test", "modality": "text", "seed": seed, "ops": list(ops)}
    return augledger.compile(augledger.loads_spec(json.dumps(doc), format="json"))


def every_op(p: float = 1.0) -> list[dict[str, Any]]:
    return [{"op": e["op"], "p": p, "params": e["example"]} for e in BACKEND.describe_ops() if not e.get("composition")]


# -- tokens ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_tokens_round_trip_byte_for_byte(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_tokenizer_is_unicode_aware() -> None:
    assert tokenize("naïve café, déjà-vu") == ["naïve", " ", "café", ",", " ", "déjà", "-", "vu"]


def test_splice_checks_every_edit() -> None:
    assert splice("a b c", [[0, "a", "x"], [4, "c", "yz"]]) == "x b yz"
    with pytest.raises(ReplayMismatch, match="expects 'q' at 0"):
        splice("a b c", [[0, "q", "x"]])
    with pytest.raises(ReplayMismatch, match="inside or before"):
        splice("a b c", [[2, "b", "x"], [0, "a", "y"]])
    with pytest.raises(ReplayMismatch, match="must be"):
        splice("a b c", [[True, "a", "x"]])


# -- every op ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TEXT_OPS))
@pytest.mark.parametrize("text", TEXTS)
def test_each_op_replays_from_its_record_alone(name: str, text: str) -> None:
    entry = next(e for e in BACKEND.describe_ops() if e["op"] == name)
    pipe = spec({"op": name, "p": 1.0, "params": {**entry["example"], "aug_p": 0.5}})
    for epoch in range(5):
        result = pipe.apply({"text": text}, key="doc.txt", epoch=epoch)
        assert [op["op"] for op in result.record.ops] == [f"augledger.text.{name}"]
        # A record is JSON data, and the op's output follows from its input and the record alone.
        recorded = json.loads(json.dumps(list(result.record.ops)))
        assert replay_records(text, recorded) == result.sample["text"]
        assert apply_recorded(text, recorded[0]) == result.sample["text"]
        again = pipe.apply({"text": text}, key="doc.txt", epoch=epoch)
        assert again.sample == result.sample and again.record == result.record


def test_all_ops_in_sequence_replay_and_change_the_text() -> None:
    pipe = spec(*every_op())
    outputs = set()
    for epoch in range(8):
        result = pipe.apply({"text": PARAGRAPHS}, key="p.txt", epoch=epoch)
        assert replay_records(PARAGRAPHS, result.record.ops) == result.sample["text"]
        assert pipe.replay({"text": PARAGRAPHS}, result.record).sample == result.sample
        assert [op["path"] for op in result.record.ops] == [f"ops[{i}]" for i in range(len(TEXT_OPS))]
        outputs.add(result.sample["text"])
    assert len(outputs) == 8 and PARAGRAPHS not in outputs


def test_untouched_text_round_trips() -> None:
    pipe = spec(*every_op(p=0.0))
    result = pipe.apply({"text": PARAGRAPHS}, key="k", epoch=0)
    assert result.sample["text"] == PARAGRAPHS and result.record.ops == ()


def test_op_semantics() -> None:
    text = "alpha beta gamma delta"

    def run(name: str, **params: Any) -> str:
        return spec({"op": name, "p": 1.0, "params": params}).apply({"text": text}, key="k", epoch=0).sample["text"]

    assert sorted(run("WordSwap", aug_p=1.0).split()) == sorted(text.split())
    assert len(run("WordDeletion", aug_p=1.0).split()) == 1  # one word always remains
    assert len(run("WordDuplication", aug_p=1.0).split()) == 8
    assert run("CaseNoise", aug_p=1.0, modes=["upper"]) == text.upper()
    assert run("SynonymReplacement", aug_p=1.0, synonyms={"Beta": ["B2"], "gamma": ["G3"]}) == "alpha B2 G3 delta"
    capital = spec({"op": "SynonymReplacement", "p": 1.0, "params": {"synonyms": {"quick": ["fast"]}}})
    assert capital.apply({"text": "Quick QUICK quick"}, key="k", epoch=0).sample["text"].split()[0] in ("Fast", "Quick")
    typo = run("KeyboardTypo", aug_p=1.0)
    assert len(typo) == len(text) and sum(a != b for a, b in zip(typo, text, strict=True)) == 4
    punct = run("PunctuationInsertion", aug_p=0.5, max_changes=2)
    assert punct.count(" ") == 5
    ocr = spec({"op": "OcrNoise", "p": 1.0, "params": {"aug_p": 1.0}}).apply({"text": "modern 50 cl"}, key="k", epoch=0)
    assert ocr.sample["text"] != "modern 50 cl"


def test_deletion_keeps_line_breaks() -> None:
    pipe = spec({"op": "WordDeletion", "p": 1.0, "params": {"aug_p": 0.5}})
    text = "one two three\nfour five six\nseven eight nine\n"
    for epoch in range(20):
        assert pipe.apply({"text": text}, key="k", epoch=epoch).sample["text"].count("\n") == 3


# -- compositions -----------------------------------------------------------------------------------

def test_compositions_record_paths_and_replay() -> None:
    pipe = spec(
        {"op": "OneOf", "p": 1.0, "ops": [{"op": "WordSwap", "p": 1.0}, {"op": "CaseNoise", "p": 3.0 / 10}]},
        {"op": "SomeOf", "params": {"n": 2}, "ops": [{"op": "OcrNoise", "p": 1.0}, {"op": "KeyboardTypo", "p": 1.0},
                                                      {"op": "WordDuplication", "p": 1.0}]},
        {"op": "Sequential", "p": 1.0, "ops": [{"op": "PunctuationInsertion", "p": 1.0}]},
    )
    seen: set[str] = set()
    for epoch in range(30):
        result = pipe.apply({"text": PARAGRAPHS}, key="k", epoch=epoch)
        paths = [op["path"] for op in result.record.ops]
        assert paths[0].startswith("ops[0].ops[") and len([p for p in paths if p.startswith("ops[1]")]) == 2
        assert paths[-1] == "ops[2].ops[0]"
        seen.update(paths)
        assert replay_records(PARAGRAPHS, result.record.ops) == result.sample["text"]
    assert {"ops[0].ops[0]", "ops[0].ops[1]", "ops[1].ops[0]", "ops[1].ops[1]", "ops[1].ops[2]"} <= seen


def test_resolved_form_fills_every_default() -> None:
    pipe = spec({"op": "OneOf", "ops": [{"op": "WordSwap"}]}, {"op": "SomeOf", "ops": [{"op": "augledger.text.CaseNoise"}]})
    ops = pipe.resolved_spec["ops"]
    assert ops[0] == {"op": "augledger.text.OneOf", "p": 0.5, "params": {}, "ops": [
        {"op": "augledger.text.WordSwap", "p": 0.5, "params": {"aug_p": 0.1, "max_changes": 10, "min_changes": 1}}]}
    assert ops[1]["params"] == {"n": 1, "replace": False} and ops[1]["p"] == 1.0
    assert ops[1]["ops"][0]["params"]["modes"] == ["upper", "lower", "title", "swapcase"]


# -- randomness ---------------------------------------------------------------------------------------

def test_global_rng_untouched_and_unused() -> None:
    pipe = spec(*every_op())
    saved_py, saved_np = random.getstate(), np.random.get_state()
    try:
        random.seed(1)
        np.random.seed(1)
        py, nps = random.getstate(), np.random.get_state()
        first = pipe.apply({"text": PARAGRAPHS}, key="k", epoch=0)
        assert random.getstate() == py and np.array_equal(np.random.get_state()[1], nps[1])
        random.seed(99)
        np.random.seed(99)
        assert pipe.apply({"text": PARAGRAPHS}, key="k", epoch=0).sample == first.sample
    finally:
        random.setstate(saved_py)
        np.random.set_state(saved_np)


_CHILD = """
import json, sys, augledger
from augledger.ops.text import BACKEND
ops = [{"op": e["op"], "p": 1.0, "params": e["example"]} for e in BACKEND.describe_ops() if not e.get("composition")]
pipe = augledger.compile(augledger.loads_spec(json.dumps({"schema": 1, "name": "x", "modality": "text", "ops": ops}), format="json"))
text = sys.stdin.read()
print(json.dumps([pipe.apply({"text": text}, key=k, epoch=e).record.to_dict() for k in ("a", "b") for e in (0, 1)]))
"""


def test_deterministic_across_fresh_interpreters_and_hash_seeds() -> None:
    outs = []
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=PARAGRAPHS, capture_output=True, text=True,
                              env=env, check=True, timeout=120)
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    pipe = spec(*every_op())
    here = [pipe.apply({"text": PARAGRAPHS}, key=k, epoch=e).record.to_dict() for k in ("a", "b") for e in (0, 1)]
    assert json.loads(outs[0]) == json.loads(json.dumps(here))


# -- golden outputs ----------------------------------------------------------------------------------

#: SHA-256 of the output text of every op in sequence (``every_op``) on PARAGRAPHS, key "golden", epochs 0-2.
#: Only a deliberate change of an op's draws may change these (records of old runs still replay).
GOLDEN = {
    0: "aabefbc297c78c56d75e54472ea7262cea41453a78f13ad89859e0dfce619498",
    1: "3c34d167d97fc1ee636a76bb59eb72d3e570a2912a6283608546cceb66c277ab",
    2: "f3d4b38adcf51b26cc8f139f05cef623ae1b5416e8c31f03325bc5d4f5fa20a6",
}


def test_golden_outputs() -> None:
    pipe = spec(*every_op(), seed=11)
    got = {e: hashlib.sha256(pipe.apply({"text": PARAGRAPHS}, key="golden", epoch=e).sample["text"].encode()).hexdigest()
           for e in range(3)}
    assert got == GOLDEN


def test_golden_text() -> None:
    pipe = spec({"op": "WordSwap", "p": 1.0, "params": {"aug_p": 0.5}}, {"op": "KeyboardTypo", "p": 1.0}, seed=11)
    assert pipe.apply({"text": "The quick brown fox jumps over the lazy dog."}, key="golden", epoch=0).sample["text"] == (
        "The brpwn quick fox jumps the over lazy dog."
    )


# -- the spec ------------------------------------------------------------------------------------------

def test_synonym_table_content_changes_the_fingerprint() -> None:
    a = spec({"op": "SynonymReplacement", "params": {"synonyms": {"quick": ["fast"]}}})
    b = spec({"op": "SynonymReplacement", "params": {"synonyms": {"quick": ["swift"]}}})
    c = spec({"op": "SynonymReplacement", "params": {"synonyms": {"Quick": ["fast", "fast"]}}})
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint  # keys lower-cased, repeats dropped: one meaning, one fingerprint


@pytest.mark.parametrize(("op", "location", "match"), [
    ({"op": "WordSwap", "params": {"aug_p": 1.5}}, "ops[1].params.aug_p", r"in \[0.0, 1.0\]"),
    ({"op": "WordSwap", "params": {"aug_pp": 0.5}}, "ops[1].params.aug_pp", "did you mean 'aug_p'"),
    ({"op": "WordSwap", "params": {"p": 0.5}}, "ops[1].params.p", "beside 'op'"),
    ({"op": "WordSwap", "params": {"max_changes": True}}, "ops[1].params.max_changes", "integer"),
    ({"op": "WordSwap", "params": {"aug_p": "0.5"}}, "ops[1].params.aug_p", "number"),
    ({"op": "WordSwap", "params": {"min_changes": 5, "max_changes": 2}}, "ops[1].params.min_changes", "above"),
    ({"op": "WordSwp"}, "ops[1].op", "did you mean 'WordSwap'"),
    ({"op": "CaseNoise", "params": {"modes": ["uper"]}}, "ops[1].params.modes[0]", "did you mean 'upper'"),
    ({"op": "PunctuationInsertion", "params": {"marks": ["a"]}}, "ops[1].params.marks[0]", "punctuation"),
    ({"op": "SynonymReplacement"}, "ops[1].params", "requires param"),
    ({"op": "SynonymReplacement", "params": {"synonyms": "syn.txt"}}, "ops[1].params.synonyms", "never a file path"),
    ({"op": "SynonymReplacement", "params": {"synonyms": {"two words": ["x"]}}}, "ops[1].params.synonyms.two words",
     "single words"),
    ({"op": "SomeOf", "params": {"n": 3}, "ops": [{"op": "WordSwap"}]}, "ops[1].params.n", "lower n"),
    ({"op": "WordSwap", "ops": [{"op": "WordSwap"}]}, "ops[1].ops", "not a composition"),
])
def test_strict_params_name_their_location(op: dict[str, Any], location: str, match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        spec({"op": "WordSwap"}, op)
    assert info.value.location == location
    assert str(info.value).startswith(location + ":")


def test_every_bad_op_is_reported_at_once() -> None:
    with pytest.raises(ParamError) as info:
        spec({"op": "WordSwap", "params": {"aug_p": 2}}, {"op": "CaseNoise", "params": {"modez": []}})
    assert "ops[0].params.aug_p" in str(info.value) and "ops[1].params.modez" in str(info.value)
    with pytest.raises(UnknownOpError):
        spec({"op": "Nope"})


def test_targets_and_bad_samples_are_refused() -> None:
    doc = {"schema": 1, "name": "t", "modality": "text", "targets": {"mask": True}, "ops": [{"op": "WordSwap"}]}
    with pytest.raises(SpecError, match="no targets"):
        augledger.compile(augledger.loads_spec(json.dumps(doc), format="json"))
    pipe = spec({"op": "WordSwap"})
    for bad in ({"image": np.zeros((2, 2))}, {"text": b"bytes"}, {"text": "a", "label": 1}):
        with pytest.raises(SampleError, match="'text' str"):
            pipe.apply(bad, key="k", epoch=0)


def test_apply_recorded_refuses_foreign_records() -> None:
    with pytest.raises(ReplayMismatch, match="not a text op"):
        apply_recorded("a", {"op": "albumentations.HorizontalFlip", "params": {}})
    with pytest.raises(ReplayMismatch, match="edits"):
        apply_recorded("a", {"op": "augledger.text.WordSwap", "params": {}})
