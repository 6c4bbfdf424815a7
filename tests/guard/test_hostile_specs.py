"""Hostile specs: every one ends in augledger's own SpecError naming the problem, fast and small.

Never a traceback, a hang or an expansion: unsafe YAML tags, alias bombs, huge and deeply nested
documents, import paths as ops, non-finite numbers, ranges far outside what an op can use, wrong types.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import augledger
from augledger.documents import MAX_DEPTH, MAX_DOCUMENT_CHARS, MAX_VALUES
from augledger.errors import ParamError, SpecError, UnknownOpError

HEAD = "schema: 1\nname: hostile\nops: [{op: HorizontalFlip}]\n"


def spec_with(op: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema": 1, "name": "hostile", "ops": [op], **top}


def bounded(fn: Callable[[], object], *, seconds: float = 2.0, megabytes: float = 64.0) -> SpecError:
    """Run ``fn``, which must raise SpecError, within ``seconds`` and ``megabytes`` of new Python memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(SpecError) as info:
            fn()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert peak < megabytes * 1e6, f"peaked at {peak / 1e6:.0f} MB"
    return info.value


# -- YAML and JSON as documents ---------------------------------------------------------------------

@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch /tmp/augledger-pwned']",
    "!!python/object/new:os.system ['true']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:augledger.spec.PipelineSpec {}",
    "!!python/tuple [1, 2]",
    "!custom {a: 1}",
])
def test_unsafe_yaml_tags_are_refused(tag: str) -> None:
    error = bounded(lambda: augledger.loads_spec(f"schema: 1\nname: {tag}\nops: [{{op: HorizontalFlip}}]\n"))
    assert "unsupported YAML tag" in str(error) and "line 2" in str(error)


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["top", "targets", "params"])
def test_billion_laughs_fails_fast_without_expanding(where: str) -> None:
    augledger.loads_spec(HEAD)  # warm: imports are not the bomb's cost
    bomb = _laughs(10)  # 9**10 = 3.5 billion strings if expanded
    if where == "top":
        text = HEAD + bomb
    elif where == "targets":
        text = HEAD + "targets:\n" + "".join(f"  {line}\n" for line in bomb.splitlines())
    else:
        text = "schema: 1\nname: x\nops:\n  - op: Affine\n    params:\n" + "".join(f"      {line}\n" for line in bomb.splitlines())
    error = bounded(lambda: augledger.loads_spec(text), seconds=2.0, megabytes=32)
    assert f"more than {MAX_VALUES} values" in str(error) and "alias" in str(error)


def test_a_few_aliases_are_still_fine() -> None:
    spec = augledger.loads_spec("schema: 1\nname: x\nops:\n  - {op: Affine, params: &r {rotate: [-5, 5]}}\n"
                                "  - {op: Affine, params: *r}\n")
    assert spec.ops[0].params == spec.ops[1].params == {"rotate": [-5, 5]}


def test_a_50_mb_document_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    huge = HEAD + "description: '" + "x" * 50_000_000 + "'\n"
    error = bounded(lambda: augledger.loads_spec(huge), seconds=2.0, megabytes=120)
    assert f"at most {MAX_DOCUMENT_CHARS}" in str(error)
    path = tmp_path / "huge.yaml"
    path.write_text(huge)
    error = bounded(lambda: augledger.load_spec(path), seconds=1.0, megabytes=8)  # not even read
    assert "huge.yaml" in str(error) and "bytes" in str(error)


@pytest.mark.parametrize(("kind", "text", "fmt"), [
    ("yaml flow sequences", HEAD + "targets: " + "[" * 10_000 + "]" * 10_000 + "\n", "yaml"),
    ("yaml flow mappings", HEAD + "targets: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "yaml"),
    ("yaml block mappings", HEAD + "targets:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1_000)), "yaml"),
    ("json arrays", '{"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "targets": ' + "[" * 10_000 + "]" * 10_000 + "}", "json"),
    ("json objects", '{"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "targets": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}", "json"),
    ("nested ops", json.dumps({"schema": 1, "name": "x", "ops": [{"op": "HorizontalFlip"}]}).replace(
        '[{"op": "HorizontalFlip"}]', '[{"op": "Sequential", "ops": ' * 5_000 + '[{"op": "HorizontalFlip"}]' + "}]" * 5_000), "json"),
])
def test_deep_nesting_is_a_spec_error_not_a_recursion_error(kind: str, text: str, fmt: str) -> None:
    error = bounded(lambda: augledger.loads_spec(text, format=fmt))  # type: ignore[arg-type]
    assert "nested" in str(error) and "deep" in str(error)


def test_deep_python_data_is_refused_too() -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = {"a": [deep]}
    error = bounded(lambda: augledger.parse_spec(spec_with({"op": "HorizontalFlip"}, targets=deep)))
    assert f"more than {MAX_DEPTH} levels" in str(error)


def test_a_complex_yaml_key_is_refused() -> None:
    error = bounded(lambda: augledger.loads_spec(HEAD + "? [a, b]\n: 1\n"))
    assert "mapping key must be a plain value" in str(error) and "line 4" in str(error)


# -- ops: only allowlisted names ------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "os.system", "__import__", "builtins.eval", "albumentations.core.composition.Compose", "augledger.X",
    "augledger.spec.PipelineSpec", "albumentations.Lambda", "Lambda", "Compose", "__class__", "__init__",
    "albumentations.__init__", "HorizontalFlip.__class__", "../HorizontalFlip", "horizontalflip", "HorizontalFlip ",
    "albumentations..HorizontalFlip", "albumentations.augmentations.geometric.flip.HorizontalFlip",
])
def test_import_paths_and_dunders_are_not_ops(name: str) -> None:
    with pytest.raises(UnknownOpError) as info:
        augledger.compile(augledger.parse_spec(spec_with({"op": name})))
    assert info.value.location == "ops[0].op" and repr(name) in str(info.value)


# -- numbers --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "fmt", "location"), [
    ("schema: 1\nname: x\nops: [{op: Affine, params: {rotate: .nan}}]\n", "yaml", "ops[0].params.rotate"),
    ("schema: 1\nname: x\nops: [{op: Affine, params: {rotate: [-.inf, .inf]}}]\n", "yaml", "ops[0].params.rotate[0]"),
    ("schema: 1\nname: x\nops: [{op: Affine, p: .NaN}]\n", "yaml", "ops[0].p"),
    ("schema: 1\nname: x\nseed: .inf\nops: [{op: Affine}]\n", "yaml", "seed"),
    ('{"schema": 1, "name": "x", "ops": [{"op": "Affine", "params": {"rotate": 1e999}}]}', "json", "ops[0].params.rotate"),
    ('{"schema": 1, "name": "x", "ops": [{"op": "Affine", "params": {"scale": -1e999}}]}', "json", "ops[0].params.scale"),
    ('{"schema": 1, "name": "x", "ops": [{"op": "Affine", "params": {"rotate": NaN}}]}', "json", "ops[0].params.rotate"),
    ('{"schema": 1, "name": "x", "ops": [{"op": "Affine", "params": {"rotate": [0, Infinity]}}]}', "json", "ops[0].params.rotate[1]"),
])
def test_non_finite_numbers_name_their_field(text: str, fmt: str, location: str) -> None:
    with pytest.raises(ParamError) as info:
        augledger.loads_spec(text, format=fmt)  # type: ignore[arg-type]
    assert info.value.location == location and "finite" in str(info.value)


@pytest.mark.parametrize(("op", "location", "words"), [
    ({"op": "Affine", "params": {"rotate": 1e308}}, "ops[0].params.rotate", "angle in degrees"),
    ({"op": "Affine", "params": {"rotate": [-1e308, 1e308]}}, "ops[0].params.rotate", "angle in degrees"),
    ({"op": "Affine", "params": {"shear": 1e9}}, "ops[0].params.shear", "angle in degrees"),
    ({"op": "Affine", "params": {"scale": [0, 0]}}, "ops[0].params.scale", "scale factor"),
    ({"op": "Affine", "params": {"scale": -1}}, "ops[0].params.scale", "scale factor"),
    ({"op": "Affine", "params": {"translate_px": 10**30}}, "ops[0].params.translate_px", "shift in pixels"),
    ({"op": "Rotate", "params": {"limit": 1e308}}, "ops[0].params.limit", "angle in degrees"),
    ({"op": "GaussianBlur", "params": {"blur_limit": [3, 10**9 + 1]}}, "ops[0].params.blur_limit", "kernel size"),
    ({"op": "GaussianBlur", "params": {"sigma_limit": [0, 1e308]}}, "ops[0].params.sigma_limit", "sigma"),
    ({"op": "MedianBlur", "params": {"blur_limit": [3, 99999]}}, "ops[0].params.blur_limit", "kernel size"),
    ({"op": "MotionBlur", "params": {"blur_limit": [3, 99999]}}, "ops[0].params.blur_limit", "kernel size"),
    ({"op": "Resize", "params": {"height": 100_000, "width": 100_000}}, "ops[0].params.height", "image side"),
    ({"op": "RandomCrop", "params": {"height": 2**70, "width": 5}}, "ops[0].params.height", "image side"),
    ({"op": "PadIfNeeded", "params": {"min_height": 10**6, "min_width": 10**6}}, "ops[0].params.min_height", "image side"),
    ({"op": "LongestMaxSize", "params": {"max_size": 10**6}}, "ops[0].params.max_size", "image side"),
    ({"op": "GlassBlur", "params": {"iterations": 10**6}}, "ops[0].params.iterations", "number of passes"),
    ({"op": "ElasticTransform", "params": {"alpha": 1e308}}, "ops[0].params.alpha", "a number"),
    ({"op": "SomeOf", "params": {"n": 10**9, "replace": True}, "ops": [{"op": "Blur"}]}, "ops[0].params.n", "at most"),
    ({"op": "Affine", "params": {"rotate": [30, -30]}}, "ops[0].params.rotate", "low <= high"),
])
def test_ranges_far_outside_what_the_op_can_use_are_refused(op: dict[str, Any], location: str, words: str) -> None:
    with pytest.raises(ParamError) as info:
        augledger.compile(augledger.parse_spec(spec_with(op)))
    assert info.value.location == location and words in str(info.value)


@pytest.mark.parametrize(("data", "location"), [
    (spec_with({"op": "Affine", "p": -0.1}), "ops[0].p"),
    (spec_with({"op": "Affine", "p": 1.5}), "ops[0].p"),
    (spec_with({"op": "Affine", "p": "0.5"}), "ops[0].p"),
    (spec_with({"op": "Affine", "p": True}), "ops[0].p"),
    (spec_with({"op": 3}), "ops[0].op"),
    (spec_with({"op": ""}), "ops[0].op"),
    (spec_with({"op": "Affine", "params": [1, 2]}), "ops[0].params"),
    (spec_with({"op": "Affine", "params": {"rotate": "abc"}}), "ops[0].params.rotate"),
    (spec_with({"op": "Affine", "params": {"rotate": {"a": 1}}}), "ops[0].params.rotate"),
    (spec_with({"op": "Resize", "params": {"height": "64", "width": 64}}), "ops[0].params.height"),
    (spec_with({"op": "Affine", "params": {"__class__": 1}}), "ops[0].params.__class__"),
    ({"schema": "1", "name": "x", "ops": [{"op": "Blur"}]}, "schema"),
    ({"schema": 1, "name": ["x"], "ops": [{"op": "Blur"}]}, "name"),
    ({"schema": 1, "name": "x", "ops": "HorizontalFlip"}, "ops"),
    ({"schema": 1, "name": "x", "ops": []}, "ops"),
    ({"schema": 1, "name": "x", "seed": 1.5, "ops": [{"op": "Blur"}]}, "seed"),
    ({"schema": 1, "name": "x", "modality": "../image", "ops": [{"op": "Blur"}]}, "modality"),
    ({"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "__import__": "os"}, "__import__"),
    ({"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "targets": {"bboxes": {"format": "coco", "label_fields": [1]}}},
     "targets.bboxes.label_fields[0]"),
    ({"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "targets": {"python": "os.system"}}, "targets.python"),
])
def test_wrong_types_name_their_field(data: dict[str, Any], location: str) -> None:
    with pytest.raises(SpecError) as info:
        augledger.compile(augledger.parse_spec(data))
    assert info.value.location == location and location in str(info.value)


@pytest.mark.parametrize("data", [None, [], "schema: 1", 42, [{"op": "Blur"}]])
def test_a_spec_that_is_not_a_mapping(data: Any) -> None:
    with pytest.raises(SpecError, match="a spec must be a mapping"):
        augledger.parse_spec(data)


def test_the_cli_reports_hostile_specs_without_a_traceback(tmp_path: Path) -> None:
    script = shutil.which("augledger", path=os.path.dirname(sys.executable)) or "augledger"
    (tmp_path / "bomb.yaml").write_text(HEAD + _laughs(10))
    (tmp_path / "deep.json").write_text('{"schema": 1, "name": "x", "ops": [{"op": "Blur"}], "targets": ' + "[" * 10_000 + "]" * 10_000 + "}")
    (tmp_path / "tag.yaml").write_text("schema: 1\nname: !!python/object/apply:os.system ['false']\nops: [{op: Blur}]\n")
    for name, words in [("bomb.yaml", "values"), ("deep.json", "nested"), ("tag.yaml", "unsupported YAML tag")]:
        t0 = time.perf_counter()
        out = subprocess.run([script, "spec", "validate", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and words in out.stderr and "Traceback" not in out.stderr + out.stdout, out.stderr
        assert time.perf_counter() - t0 < 20
