"""``augledger ops list``: every op of every modality, plain or JSON; a modality without its extra is a note."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from augledger.cli import ops  # noqa: F401  (registers the command; imported here: rich draws from `random` on import)
from augledger.cli._app import app
from augledger.errors import BackendError
from augledger.ops import registry
from augledger.ops.base import Backend
from augledger.ops.registry import get_backend


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["ops", "list", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_lists_every_op_with_params_and_an_example() -> None:
    code, out, _ = run("--json", "--modality", "image")
    assert code == 0
    entries = json.loads(out)
    assert {e["op"] for e in entries} == set(get_backend("image").op_names())
    crop = next(e for e in entries if e["op"] == "RandomCrop")
    assert crop["required"] == ["height", "width"] and crop["example"] == {"height": 32, "width": 32}
    assert crop["params"]["pad_if_needed"] is False and crop["modality"] == "image"
    assert next(e for e in entries if e["op"] == "ShiftScaleRotate")["alias_of"] == "Affine"
    assert next(e for e in entries if e["op"] == "OneOf")["composition"] is True


def test_plain_output_is_one_line_per_op() -> None:
    code, out, _ = run()
    assert code == 0
    lines = out.splitlines()
    from augledger.ops.registry import modalities

    assert len(lines) == sum(len(get_backend(m).describe_ops()) for m in modalities())
    assert any(line.startswith("RandomCrop  image p=1  height=REQUIRED width=REQUIRED") for line in lines)


@pytest.fixture
def missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_loaders", dict(registry._loaders))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))

    def load() -> Backend:
        raise BackendError("augledger's zz ops need the 'zz' extra: pip install 'augledger[zz]' (could not import zzlib)")

    registry.register_backend("zz", load)


def test_a_modality_without_its_extra_is_skipped_with_the_install_hint(missing_extra: None) -> None:
    code, out, err = run()
    assert code == 0 and "modality 'zz' skipped: pip install 'augledger[zz]'" in err
    code, out, _ = run("--json")
    assert code == 0 and {"modality": "zz", "unavailable": "pip install 'augledger[zz]'"} in json.loads(out)
    code, _, err = run("--modality", "zz")
    assert code == 1 and "pip install 'augledger[zz]'" in err
