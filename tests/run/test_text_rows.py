"""JSON Lines and CSV text sources (run/rows.py): one sample per row, other columns carried through,
augmented.jsonl|csv re-made by verify, resume per row, and every bad input a SourceError naming the line."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import augledger
from augledger.cli import inspect, run  # noqa: F401  (each registers its commands; imported here: rich draws from `random` on import)
from augledger.cli._app import app
from augledger.errors import SourceError
from augledger.ledger import read_ledger
from augledger.run.materialize import EXIT_QUARANTINED, materialize
from augledger.run.options import RunOptions
from augledger.run.rows import RowSource, row_source
from augledger.run.verify import replay_output, verify

SPEC = {
    "schema": 1, "name": "rows", "modality": "text", "seed": 3,
    "ops": [
        {"op": "WordSwap", "p": 0.8, "params": {"aug_p": 0.3}},
        {"op": "KeyboardTypo", "p": 0.8, "params": {"aug_p": 0.2}},
    ],
}
ROWS: list[dict[str, Any]] = [
    {"id": "doc-1", "text": "The river had risen overnight, and the lower field was a lake.", "label": 1, "split": "train"},
    {"id": "doc-2", "text": "Mara counted twelve geese\r\nbefore breakfast that morning.", "label": "pos",
     "meta": {"tags": ["a", "b"], "score": 0.25}, "note": None},
    {"id": "nested/doc-3", "text": "Neither of them could say where the old fence had gone.", "label": 0, "split": "test"},
]


@pytest.fixture(scope="module")
def pipe() -> augledger.Pipeline:
    return augledger.compile(augledger.loads_spec(json.dumps(SPEC), format="json"))


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _load(path: Path) -> RowSource:
    return RowSource.load(path, text_field="text", key_field="id")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".augledger" not in p.parts and p.name != "run.json"}


def test_jsonl_end_to_end(tmp_path: Path, pipe: augledger.Pipeline) -> None:
    src = _jsonl(tmp_path / "data.jsonl", ROWS)
    one = materialize(pipe, _load(src), tmp_path / "one", options=RunOptions(copies=2, workers=1))
    two = materialize(pipe, _load(src), tmp_path / "two", options=RunOptions(copies=2, workers=2))
    assert one.exit_code == two.exit_code == 0
    # 1 vs 2 workers: every file byte-identical (outputs, augmented.jsonl, ledger, manifest).
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    out = tmp_path / "one"
    assert sorted(p for p in _tree(out) if p.startswith("augmented/")) == [
        "augmented/doc-1.c0.txt", "augmented/doc-1.c1.txt", "augmented/doc-2.c0.txt", "augmented/doc-2.c1.txt",
        "augmented/nested/doc-3.c0.txt", "augmented/nested/doc-3.c1.txt",
    ]
    lines = [json.loads(line) for line in (out / "augmented.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["copy"]) for r in lines] == [(r["id"], c) for r in sorted(ROWS, key=lambda r: r["id"]) for c in (0, 1)]
    by_id = {r["id"]: r for r in ROWS}
    for line in lines:
        source = by_id[line["id"]]
        # The labels and other columns unchanged (types too), the text the per-sample output's.
        assert {k: v for k, v in line.items() if k not in ("copy", "text")} == {k: v for k, v in source.items() if k != "text"}
        assert line["text"] == (out / f"augmented/{line['id']}.c{line['copy']}.txt").read_bytes().decode()
        assert list(line)[:3] == ["id", "copy", "text"]
    assert any(line["text"] != by_id[line["id"]]["text"] for line in lines)
    assert lines[2]["text"].count("\r\n") == 1  # the text's own line break kept
    manifest = one.manifest
    assert manifest["rows"]["format"] == "jsonl" and manifest["rows"]["rows"] == 6
    assert manifest["rows"]["source_sha256"] == augledger._canonical.sha256_hex(src.read_bytes())
    targets = json.loads(read_ledger(out).find("doc-2", 0)[0]["targets"])
    assert targets == {"label": "pos", "meta": {"tags": ["a", "b"], "score": 0.25}, "note": None}
    report = verify(out)
    assert report.ok, report.problems
    assert report.checked == 6
    replayed = replay_output(out, "nested/doc-3", 1)
    assert replayed.stored_matches and replayed.data == (out / "augmented/nested/doc-3.c1.txt").read_bytes()

    # An edited line of augmented.jsonl fails verify, naming its key.
    edited = tmp_path / "two" / "augmented.jsonl"
    text = edited.read_text(encoding="utf-8").splitlines(keepends=True)
    text[3] = text[3].replace('"label": "pos"', '"label": "neg"')
    edited.write_text("".join(text), encoding="utf-8")
    problems = verify(tmp_path / "two").problems
    assert [(p.key, p.epoch) for p in problems] == [("doc-2", 1)], problems
    assert "augmented.jsonl line 4" in problems[0].message
    # An edited per-sample output too.
    shutil.copy(out / "augmented.jsonl", edited)
    (tmp_path / "two" / "augmented" / "doc-1.c0.txt").write_text("edited", encoding="utf-8")
    problems = verify(tmp_path / "two").problems
    assert {p.key for p in problems} == {"doc-1"} and any("modified since the run" in p.message for p in problems)
    # A changed row of the source names its key; moved sources are found with --source.
    moved = tmp_path / "moved.jsonl"
    _jsonl(moved, [ROWS[0], {**ROWS[1], "label": "neg"}, ROWS[2]])
    problems = verify(out, source=moved).problems
    assert {p.key for p in problems} == {"doc-2"} and all("source file changed" in p.message for p in problems)
    src.unlink()
    with pytest.raises(augledger.errors.LedgerError, match="pass --source"):
        verify(out)


def test_csv_end_to_end(tmp_path: Path, pipe: augledger.Pipeline) -> None:
    src = tmp_path / "data.csv"
    src.write_text('id,label,text,lang\nb,1,"first line, with a comma\nand a second line",en\n'
                   'a,0,another short sentence for the test,\n', encoding="utf-8")
    result = materialize(pipe, _load(src), tmp_path / "out", options=RunOptions(copies=1, workers=1))
    assert result.exit_code == 0
    out = tmp_path / "out"
    rows = list(csv.DictReader(io.StringIO((out / "augmented.csv").read_text(encoding="utf-8"), newline="")))
    assert list(rows[0]) == ["id", "copy", "text", "label", "lang"]
    assert [(r["id"], r["copy"], r["label"], r["lang"]) for r in rows] == [("a", "0", "0", ""), ("b", "0", "1", "en")]
    for r in rows:
        assert r["text"] == (out / f"augmented/{r['id']}.c0.txt").read_bytes().decode()
    assert "\n" in rows[1]["text"]
    assert verify(out).ok
    (out / "augmented.csv").write_text((out / "augmented.csv").read_text(encoding="utf-8").replace(",1,en", ",1,fr"),
                                       encoding="utf-8")
    assert [(p.key, p.epoch) for p in verify(out).problems] == [("b", 0)]
    (out / "augmented.csv").unlink()
    assert [p.message for p in verify(out).problems] == ["augmented.csv is missing"]


def test_resume_after_adding_rows(tmp_path: Path, pipe: augledger.Pipeline) -> None:
    src = _jsonl(tmp_path / "data.jsonl", ROWS[:2])
    first = materialize(pipe, _load(src), tmp_path / "out", options=RunOptions(copies=2, workers=1))
    assert first.reused == 0 and first.manifest["counts"]["outputs"] == 4
    # One row added, one label changed: only those rows' outputs are made again.
    _jsonl(src, [ROWS[0], {**ROWS[1], "label": "neg"}, ROWS[2]])
    again = materialize(pipe, _load(src), tmp_path / "out", options=RunOptions(copies=2, workers=1))
    assert again.reused == 2 and again.run["made"] == 4
    materialize(pipe, _load(src), tmp_path / "fresh", options=RunOptions(copies=2, workers=1))
    assert _tree(tmp_path / "out") == _tree(tmp_path / "fresh")
    assert verify(tmp_path / "out").ok


def test_bad_rows_are_quarantined_and_left_out(tmp_path: Path, pipe: augledger.Pipeline) -> None:
    src = _jsonl(tmp_path / "data.jsonl", [ROWS[0], {"id": "empty", "text": "", "label": 2}])
    result = materialize(pipe, _load(src), tmp_path / "out", options=RunOptions(copies=1, workers=1))
    assert result.exit_code == EXIT_QUARANTINED and [q["key"] for q in result.quarantined] == ["empty"]
    assert [json.loads(line)["id"] for line in (tmp_path / "out" / "augmented.jsonl").read_text().splitlines()] == ["doc-1"]
    assert verify(tmp_path / "out").ok


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "body": "x"}\n', r"data\.jsonl:1: no 'text' field .*\['body', 'id'\]"),
    ('{"id": "a", "text": "x"}\n{"text": "y"}\n', r"data\.jsonl:2: every row needs a non-empty string in 'id'.*got None"),
    ('{"id": "", "text": "x"}\n', r"non-empty string in 'id'"),
    ('{"id": 7, "text": "x"}\n', r"non-empty string in 'id'.*got 7"),
    ('{"id": "a", "text": "x"}\n\n{"id": "a", "text": "y"}\n', r"data\.jsonl:3: key 'a' appears twice"),
    ('{"id": "../x", "text": "x"}\n', r"climbs out of its root folder"),
    ('{"id": "/etc/x", "text": "x"}\n', r"is absolute"),
    ('{"id": "a/./b", "text": "x"}\n', r"not a plain relative name"),
    ('{"id": ".hidden", "text": "x"}\n', r"not a plain relative name"),
    ('{"id": "A", "text": "x"}\n{"id": "a", "text": "y"}\n', r"differ only by letter case"),
    ('{"id": "a", "text": 12}\n', r"'text' must be a string; got 12 \(int\)"),
    ('{"id": "a", "text": null}\n', r"'text' must be a string; got None"),
    ('{"id": "a", "text": "x", "score": NaN}\n', r"data\.jsonl:1: not valid JSON: NaN is not a number"),
    ('{"id": "a", "text": "x"\n', r"data\.jsonl:1: not valid JSON"),
    ('["a", "x"]\n', r"each line must be a JSON object; got list"),
    ('{"id": "a", "text": "x", "copy": 1}\n', r"a column is named 'copy'"),
    ('{"id": "a", "text": "x", "mask": "m.png"}\n', r"would be read as a stored mask"),
    ("\n", r"has no rows"),
])
def test_bad_jsonl_is_a_source_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "data.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(SourceError, match=message):
        _load(tmp_path / "data.jsonl")


@pytest.mark.parametrize(("content", "message"), [
    ("id,text\na,x\nb,y,z\n", r"data\.csv:3: 3 fields, the header has 2"),
    ("id,text,id\na,x,y\n", r"names a column twice"),
    ("id,body\na,x\n", r"data\.csv:2: no 'text' field"),
    ("", r"no header row"),
])
def test_bad_csv_is_a_source_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "data.csv").write_text(content, encoding="utf-8")
    with pytest.raises(SourceError, match=message):
        _load(tmp_path / "data.csv")


def test_unreadable_and_unsupported_sources(tmp_path: Path, pipe: augledger.Pipeline) -> None:
    with pytest.raises(SourceError, match="cannot be read"):
        _load(tmp_path / "absent.jsonl")
    (tmp_path / "latin.csv").write_bytes("id,text\na,café\n".encode("latin-1"))
    with pytest.raises(SourceError, match="is not UTF-8"):
        _load(tmp_path / "latin.csv")
    (tmp_path / "data.tsv").write_text("id\ttext\n")
    with pytest.raises(SourceError, match=r"\.jsonl, \.ndjson or \.csv"):
        _load(tmp_path / "data.tsv")
    with pytest.raises(SourceError, match="two different columns"):
        RowSource.load(tmp_path / "latin.csv", text_field="id", key_field="id")
    rows = _load(_jsonl(tmp_path / "data.jsonl", ROWS))
    with pytest.raises(SourceError, match="does not take include_original"):
        materialize(pipe, rows, tmp_path / "o1", options=RunOptions(include_original=True))
    with pytest.raises(SourceError, match="format webdataset"):
        materialize(pipe, rows, tmp_path / "o2", options=RunOptions(format="webdataset"))
    with pytest.raises(SourceError, match="modality is 'image'"):
        row_source(rows, "image", RunOptions())


def test_cli_run_verify_replay(tmp_path: Path) -> None:
    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    src = tmp_path / "data.csv"
    src.write_text("key,body,label\nx,a sentence with several words,1\ny,one more sentence,0\n", encoding="utf-8")
    out = tmp_path / "out"
    done = cli("run", str(spec), "--source", str(src), "--text-field", "body", "--key-field", "key", "--out", str(out),
               "--workers", "1")
    assert done.exit_code == 0, done.output
    assert (out / "augmented.csv").read_text().startswith("key,copy,body,label\n")
    assert cli("verify", str(out)).exit_code == 0
    replayed = cli("replay", str(out), "y")
    assert replayed.exit_code == 0 and json.loads(replayed.stdout)["key"] == "y"
    missing = cli("run", str(spec), "--source", str(src), "--out", str(tmp_path / "o2"))
    assert missing.exit_code == 2 and "--key-field" in missing.output
    folder = tmp_path / "texts"
    folder.mkdir()
    stray = cli("run", str(spec), "--source", str(folder), "--text-field", "body", "--out", str(tmp_path / "o3"))
    assert stray.exit_code == 2 and "--text-field" in stray.output
