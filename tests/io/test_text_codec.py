"""The text codec (UTF-8 .txt, newline and BOM kept, quarantine reasons) and an offline run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import augledger
from augledger.errors import Quarantined
from augledger.io.codecs import get_codec
from augledger.io.text import TextCodec, decode_text, encode_text
from augledger.ledger import read_ledger
from augledger.run.materialize import EXIT_QUARANTINED, materialize
from augledger.run.options import RunOptions
from augledger.run.verify import replay_output, verify

STORY = (
    "The river had risen overnight, and by morning the lower field was a shallow lake.\n"
    "Mara counted 12 geese on it before breakfast; her brother swore there were 15.\n"
    "Neither of them could say where the fence had gone.\n"
)


@pytest.mark.parametrize(("data", "text", "meta"), [
    (b"a b\nc\n", "a b\nc\n", {"bom": False, "newline": "\n"}),
    (b"a b\r\nc\r\n", "a b\nc\n", {"bom": False, "newline": "\r\n"}),
    (b"a b\rc", "a b\nc", {"bom": False, "newline": "\r"}),
    (b"a\r\nb\nc", "a\r\nb\nc", {"bom": False, "newline": "mixed"}),
    (b"\xef\xbb\xbfna\xc3\xafve\r\n", "na\u00efve\n", {"bom": True, "newline": "\r\n"}),
])
def test_decode_and_encode_round_trip(data: bytes, text: str, meta: dict[str, object]) -> None:
    decoded = TextCodec().decode(data)
    assert decoded.sample == {"text": text} and decoded.meta == meta
    assert TextCodec().encode(decoded.sample, "txt", decoded.meta).data == data


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"\xef\xbb\xbf", "empty"),
    (b"caf\xe9 lat", "not-utf8"),
    (b"abc\x00def", "nul-bytes"),
    (b"x" * 11, "too-large"),
])
def test_quarantine_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(Quarantined) as info:
        decode_text(data, max_bytes=10)
    assert info.value.reason == reason


def test_factory_takes_run_settings_and_ignores_others() -> None:
    codec = get_codec("text", max_pixels=10, jpeg_quality=90)
    assert isinstance(codec, TextCodec) and codec.formats == ("txt",) and codec.output_format("a.txt", "png") == "txt"
    assert TextCodec(max_bytes=5).max_bytes == 5
    with pytest.raises(ValueError, match="max_bytes"):
        TextCodec(max_bytes=0)
    assert encode_text("a\nb", {"newline": "\r\n", "bom": True}) == b"\xef\xbb\xbfa\r\nb"


SPEC = {
    "schema": 1, "name": "text-run", "modality": "text", "seed": 5,
    "ops": [
        {"op": "WordSwap", "p": 0.7, "params": {"aug_p": 0.2}},
        {"op": "OneOf", "p": 1.0, "ops": [{"op": "KeyboardTypo", "params": {"aug_p": 0.2}}, {"op": "OcrNoise"}]},
        {"op": "SynonymReplacement", "p": 1.0, "params": {"synonyms": {"river": ["stream", "brook"], "field": ["meadow"]}}},
    ],
}


def _source(root: Path) -> Path:
    src = root / "src"
    (src / "nested").mkdir(parents=True)
    (src / "story.txt").write_bytes(STORY.encode())
    (src / "crlf.txt").write_bytes(STORY.replace("\n", "\r\n").encode())
    (src / "nested" / "bom.txt").write_bytes(b"\xef\xbb\xbf" + STORY.encode())
    (src / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (src / "notes.md").write_text("not a sample")
    return src


def test_run_end_to_end(tmp_path: Path) -> None:
    pipe = augledger.compile(augledger.loads_spec(json.dumps(SPEC), format="json"))
    src = _source(tmp_path)
    one = materialize(pipe, src, tmp_path / "one", options=RunOptions(copies=2, workers=1))
    two = materialize(pipe, src, tmp_path / "two", options=RunOptions(copies=2, workers=2))
    assert one.exit_code == two.exit_code == EXIT_QUARANTINED
    assert {q["key"] for q in one.quarantined} == {"latin1.txt"}
    assert all("not-utf8" in json.dumps(q) for q in one.quarantined), one.quarantined
    # 1 vs 2 workers: byte-identical outputs, ledger rows and manifest.
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "augmented").rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "augmented/crlf.txt.c0.txt", "augmented/crlf.txt.c1.txt", "augmented/nested/bom.txt.c0.txt",
        "augmented/nested/bom.txt.c1.txt", "augmented/story.txt.c0.txt", "augmented/story.txt.c1.txt",
    ]
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()
    assert (tmp_path / "one" / "manifest.json").read_bytes() == (tmp_path / "two" / "manifest.json").read_bytes()
    # Newline convention and BOM as the source's; only the ops' edits differ.
    crlf = (tmp_path / "one" / "augmented" / "crlf.txt.c0.txt").read_bytes()
    assert crlf.count(b"\r\n") == 3 and crlf.count(b"\n") == 3
    bom = (tmp_path / "one" / "augmented" / "nested" / "bom.txt.c0.txt").read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf") and b"\r" not in bom
    # The ledger's records replay each output from the source text alone.
    from augledger.ops.text import replay_records

    for row in read_ledger(tmp_path / "one").rows():
        if row["status"] == "ok":
            source = (src / row["key"]).read_bytes()
            text, meta = TextCodec().decode(source).sample["text"], TextCodec().decode(source).meta
            assert encode_text(replay_records(text, json.loads(row["ops"])), meta) == \
                (tmp_path / "one" / row["output_path"]).read_bytes()
    report = verify(tmp_path / "one")
    assert report.ok and report.checked == 6
    replayed = replay_output(tmp_path / "one", "crlf.txt", 1)
    assert replayed.stored_matches and replayed.data == (tmp_path / "one" / "augmented" / "crlf.txt.c1.txt").read_bytes()
    # A changed output fails verification, naming it.
    (tmp_path / "two" / "augmented" / "story.txt.c0.txt").write_bytes(b"edited")
    bad = verify(tmp_path / "two")
    assert not bad.ok and any(p.key == "story.txt" for p in bad.problems)


def test_run_with_originals(tmp_path: Path) -> None:
    pipe = augledger.compile(augledger.loads_spec(json.dumps(SPEC), format="json"))
    src = _source(tmp_path)
    (src / "latin1.txt").unlink()
    result = materialize(pipe, src, tmp_path / "out", options=RunOptions(copies=1, include_original=True))
    assert result.exit_code == 0
    assert (tmp_path / "out" / "original" / "crlf.txt").read_bytes() == (src / "crlf.txt").read_bytes()
    assert verify(tmp_path / "out").ok


def test_online_dataset_of_text(tmp_path: Path) -> None:
    from augledger.torch import AugmentedDataset

    pipe = augledger.compile(augledger.loads_spec(json.dumps(SPEC), format="json"))
    items = [(STORY, 0), ({"text": STORY.upper(), "id": 7}, 1)]
    ds = AugmentedDataset(items, pipe, key=lambda i: f"doc{i}")
    text, label = ds[(0, 0)]
    assert isinstance(text, str) and label == 0 and text == pipe.apply({"text": STORY}, key="doc0", epoch=0).sample["text"]
    head, label = ds[(1, 1)]
    assert head["id"] == 7 and label == 1 and isinstance(head["text"], str)
