"""`augledger registry ...` and REFs on the command line, run as a team would: real subprocesses, two users."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import SCRIPT, SPEC, make_source


def cli(*args: str, cwd: Path, user: str = "alice", **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "AUGLEDGER_USER": user, **env}
    full_env.pop("AUGLEDGER_REGISTRY", None)
    full_env.pop("AUGLEDGER_REQUIRE_APPROVED", None)
    full_env.update(env)
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env=full_env)


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A project folder with two spec versions (mild and strong rotation) and a small source folder."""
    mild = {**SPEC, "name": "digits"}
    strong = {**mild, "ops": [*SPEC["ops"][:1], {"op": "Affine", "p": 0.9, "params": {"rotate": [-40, 40]}}]}
    (tmp_path / "mild.yaml").write_text(yaml.safe_dump(mild))
    (tmp_path / "strong.yaml").write_text(yaml.safe_dump(strong))
    make_source(tmp_path / "src", 4)
    return tmp_path


def test_newcomer_flow_register_approve_alias_run_rollback_audit(team: Path) -> None:
    add1 = cli("registry", "add", "mild.yaml", "--note", "baseline", cwd=team)
    assert add1.returncode == 0, add1.stderr
    ref1, fp1 = add1.stdout.split()
    assert ref1 == "digits@1" and fp1.startswith("sha256:")
    assert (team / ".augledger" / "registry.db").is_file()
    again = cli("registry", "add", "mild.yaml", cwd=team, user="bob")
    assert again.returncode == 0 and again.stdout.split() == [ref1, fp1] and "nothing changed" in again.stderr
    assert cli("registry", "add", "strong.yaml", cwd=team).stdout.split()[0] == "digits@2"

    self_approve = cli("registry", "promote", "digits@1", "--to", "approved", "--reason", "mine", cwd=team)
    assert self_approve.returncode == 1 and "four eyes" in self_approve.stderr
    ok = cli("registry", "promote", "digits@1", "--to", "approved", "--reason", "reviewed the grid", cwd=team, user="bob")
    assert ok.returncode == 0 and "digits@1 is now approved" in ok.stdout
    illegal = cli("registry", "deprecate", "digits@2", "--reason", "x", cwd=team, user="bob")
    assert illegal.returncode == 1 and "digits@2 is draft; it can move to approved, retired, not to deprecated" in illegal.stderr

    assert cli("registry", "alias", "digits", "production", "1", cwd=team, user="bob").returncode == 0
    listed = json.loads(cli("registry", "list", "--json", cwd=team).stdout)
    assert [(v["ref"], v["state"], v["aliases"]) for v in listed] == [
        ("digits@1", "approved", ["production"]), ("digits@2", "draft", [])]

    shown = json.loads(cli("registry", "show", "digits@production", "--json", cwd=team).stdout)
    assert shown["ref"] == "digits@1" and shown["fingerprint"] == fp1 and shown["aliases"] == ["production"]
    assert [(h["action"], h["actor"]) for h in shown["history"]] == [("add", "alice"), ("promote", "bob"), ("alias", "bob")]
    assert shown["history"][1]["reason"] == "reviewed the grid"

    run = cli("run", "digits@production", "--source", "src", "--out", "out", "--workers", "1", "--json", cwd=team)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((team / "out" / "manifest.json").read_text())
    assert manifest["registry"] == {"ref": "digits@production", "name": "digits", "version": 1, "fingerprint": fp1}
    assert json.loads((team / "out" / "run.json").read_text())["registry"]["state"] == "approved"
    assert manifest["fingerprint"] == fp1
    import pyarrow.parquet as pq

    header = json.loads(pq.read_schema(team / "out" / "ledger.parquet").metadata[b"augledger"])
    assert header["registry"]["ref"] == "digits@production" and header["registry"]["version"] == 1

    # Blue/green: production moves to 2 (approved by bob), then back.
    assert cli("registry", "promote", "digits@2", "--reason", "canary looked fine", cwd=team, user="bob").returncode == 0
    assert "digits@production -> digits@2 (was 1)" in cli("registry", "alias", "digits", "production", "2", cwd=team).stdout
    assert cli("spec", "hash", "digits@production", cwd=team).stdout.strip() != fp1
    back = cli("registry", "rollback", "digits", "production", "--reason", "accuracy dropped", cwd=team)
    assert back.returncode == 0 and "rolled back from 2" in back.stdout
    assert cli("spec", "hash", "digits@production", cwd=team).stdout.strip() == fp1

    audit = cli("registry", "audit", cwd=team)
    assert audit.returncode == 0 and "ok:" in audit.stdout


def test_retired_and_unapproved_refs_are_refused_by_run(team: Path) -> None:
    cli("registry", "add", "mild.yaml", cwd=team)
    cli("registry", "add", "strong.yaml", cwd=team)
    strict = cli("run", "digits@1", "--source", "src", "--out", "o1", "--require-approved", cwd=team)
    assert strict.returncode == 1 and "approval is required" in strict.stderr and "digits@1 is draft" in strict.stderr
    by_env = cli("run", "digits@1", "--source", "src", "--out", "o1", cwd=team, AUGLEDGER_REQUIRE_APPROVED="1")
    assert by_env.returncode == 1 and "approval is required" in by_env.stderr
    file_strict = cli("run", "mild.yaml", "--source", "src", "--out", "o1", "--require-approved", cwd=team)
    assert file_strict.returncode == 1 and "spec file 'mild.yaml' (digits@1) is draft" in file_strict.stderr
    assert not (team / "o1").exists()

    cli("registry", "promote", "digits@1", "--reason", "ok", cwd=team, user="bob")
    approved_file = cli("run", "mild.yaml", "--source", "src", "--out", "o2", "--workers", "1", "--require-approved", cwd=team)
    assert approved_file.returncode == 0, approved_file.stderr
    assert "registry" not in json.loads((team / "o2" / "manifest.json").read_text())  # a file: the bytes do not say
    facts = json.loads((team / "o2" / "run.json").read_text())["registry"]
    assert (facts["ref"], facts["name"], facts["version"], facts["state"]) == (None, "digits", 1, "approved")

    cli("registry", "deprecate", "digits@1", "--reason", "superseded", cwd=team, user="bob")
    warned = cli("run", "digits@1", "--source", "src", "--out", "o3", "--workers", "1", cwd=team)
    assert warned.returncode == 0 and "warning: digits@1 is deprecated" in warned.stderr
    from_file = cli("run", "mild.yaml", "--source", "src", "--out", "o5", "--workers", "1", cwd=team)
    assert from_file.returncode == 0 and "warning: spec file 'mild.yaml' (digits@1) is deprecated" in from_file.stderr
    assert json.loads((team / "o5" / "run.json").read_text())["registry"]["version"] == 1
    cli("registry", "retire", "digits@1", "--reason", "gone", cwd=team, user="bob")
    retired = cli("run", "digits@1", "--source", "src", "--out", "o4", cwd=team)
    assert retired.returncode == 1 and "retired and can no longer be used" in retired.stderr
    assert not (team / "o4").exists()
    assert cli("preview", "digits@1", str(next((team / "src").rglob("*.png"))), "-o", "g.png", cwd=team).returncode == 1
    retired_file = cli("run", "mild.yaml", "--source", "src", "--out", "o6", cwd=team)
    assert retired_file.returncode == 1 and "spec file 'mild.yaml' (digits@1) is retired" in retired_file.stderr
    shown = cli("spec", "hash", "digits@1", cwd=team)  # read-only commands still show a retired version
    assert shown.returncode == 0 and shown.stdout.startswith("sha256:") and "retired" in shown.stderr


def test_registry_flag_and_env_pick_the_registry(team: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "team.db"
    added = cli("registry", "--registry", str(shared), "add", "mild.yaml", cwd=team)
    assert added.returncode == 0 and shared.is_file() and not (team / ".augledger").exists()
    assert cli("spec", "hash", "digits@1", cwd=team, AUGLEDGER_REGISTRY=str(shared)).returncode == 0
    assert cli("--registry", str(shared), "spec", "hash", "digits@1", cwd=team).returncode == 0
    missing = cli("spec", "hash", "digits@1", cwd=team)
    assert missing.returncode == 1 and "no registry at" in missing.stderr


def test_the_registry_is_found_from_a_subfolder_and_a_new_one_is_announced(team: Path) -> None:
    first = cli("registry", "add", "mild.yaml", cwd=team)
    assert "created a new registry at" in first.stderr
    sub = team / "experiments" / "week1"
    sub.mkdir(parents=True)
    (sub / "strong.yaml").write_text((team / "strong.yaml").read_text())
    again = cli("registry", "add", "strong.yaml", cwd=sub)
    assert again.returncode == 0 and again.stdout.startswith("digits@2 ") and "created" not in again.stderr
    assert not (sub / ".augledger").exists()
    assert cli("spec", "hash", "digits@1", cwd=sub).returncode == 0


def test_usage_errors_exit_2_and_unknown_names_exit_1(team: Path) -> None:
    cli("registry", "add", "mild.yaml", cwd=team)
    assert cli("registry", "promote", "digits@1", "--to", "draft", "--reason", "x", cwd=team).returncode == 2
    unknown = cli("registry", "list", "nosuch", cwd=team)
    assert unknown.returncode == 1 and "no versions named 'nosuch'" in unknown.stderr
    staging = cli("registry", "alias", "digits", "staging", "1", "--allow-unapproved", cwd=team)
    assert staging.returncode == 0
    salt = cli("run", "mild.yaml", "--salt", "x", "--source", "src", "--out", "o", cwd=team)
    assert salt.returncode == 2 and "add --variant" in salt.stderr
    control = cli("run", "mild.yaml", "--variant", "control=strong.yaml:0.1", "--source", "src", "--out", "o", cwd=team)
    assert control.returncode == 2 and "'control' is reserved" in control.stderr
    zero = cli("run", "mild.yaml", "--variant", "b=strong.yaml:0", "--source", "src", "--out", "o", cwd=team)
    assert zero.returncode == 2 and "between 0 and 1" in zero.stderr


def test_export_diff_and_unknown_refs(team: Path) -> None:
    cli("registry", "add", "mild.yaml", cwd=team)
    cli("registry", "add", "strong.yaml", cwd=team)
    assert cli("registry", "export", "digits@2", "-o", "exported.yaml", cwd=team).returncode == 0
    assert (cli("spec", "hash", "exported.yaml", cwd=team).stdout.strip()
            == cli("spec", "hash", "strong.yaml", cwd=team).stdout.strip())
    diff = cli("registry", "diff", "digits@1", "digits@2", cwd=team)
    assert diff.returncode == 1 and "ops[1].params.rotate" in diff.stdout and "different fingerprints" in diff.stdout
    assert cli("registry", "diff", "digits@1", "digits@1", cwd=team).returncode == 0
    unknown = cli("registry", "show", "digits@9", cwd=team)
    assert unknown.returncode == 1 and "'digits' has no version 9" in unknown.stderr and "versions: 1, 2" in unknown.stderr


def test_audit_cli_names_the_edited_row(team: Path) -> None:
    import sqlite3

    cli("registry", "add", "mild.yaml", cwd=team)
    cli("registry", "promote", "digits@1", "--reason", "ok", cwd=team, user="bob")
    with sqlite3.connect(team / ".augledger" / "registry.db") as conn:
        conn.execute("UPDATE augledger_history SET actor = 'alice' WHERE action = 'promote'")
    audit = cli("registry", "audit", cwd=team)
    assert audit.returncode == 1
    assert audit.stderr.startswith("error: audit failed: history row 3 (") and "the row was edited" in audit.stderr
    as_json = json.loads(cli("registry", "audit", "--json", cwd=team).stdout)
    assert as_json["ok"] is False and as_json["problems"][0].startswith("history row 3")


def test_canary_run_same_for_any_worker_count_and_replays_both_variants(team: Path) -> None:
    from helpers import make_source, tree_digests

    make_source(team / "many", 24)
    cli("registry", "add", "mild.yaml", cwd=team)
    cli("registry", "add", "strong.yaml", cwd=team)
    draft = cli("registry", "alias", "digits", "production", "1", cwd=team)
    assert draft.returncode == 1 and "digits@1 is draft, not approved" in draft.stderr
    cli("registry", "promote", "digits@1", "--reason", "ok", cwd=team, user="bob")
    assert cli("registry", "alias", "digits", "production", "1", cwd=team).returncode == 0
    args = ("run", "digits@production", "--variant", "candidate=digits@2:0.25", "--salt", "exp-42", "--source", "many",
            "--copies", "2")
    one = cli(*args, "--out", "w1", "--workers", "1", cwd=team)
    two = cli(*args, "--out", "w2", "--workers", "2", cwd=team)
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert "variant candidate (0.25):" in one.stdout and "variant control (0.75):" in one.stdout
    assert tree_digests(team / "w1") == tree_digests(team / "w2")
    manifest = json.loads((team / "w1" / "manifest.json").read_text())
    counts = manifest["counts"]["variants"]
    assert set(counts) == {"control", "candidate"} and sum(c["ok"] for c in counts.values()) == 48
    assert manifest["registry"]["ref"] == "digits@production"
    assert manifest["registry"]["variants"]["candidate"]["ref"] == "digits@2"
    assert cli("verify", "w1", cwd=team).returncode == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(team / "w1" / "ledger.parquet").to_pylist()
    for name in ("control", "candidate"):
        row = next(r for r in rows if r["variant"] == name)
        replay = cli("replay", "w1", row["key"], "--copy", str(row["epoch"]), cwd=team)
        assert replay.returncode == 0, replay.stderr
        shown = json.loads(replay.stdout)
        assert (shown["variant"], shown["fingerprint"], shown["stored_matches"]) == (name, row["fingerprint"], True)
    bad = cli("run", "digits@1", "--variant", "candidate=digits@2:1.5", "--source", "many", "--out", "w3", cwd=team)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr
    bad = cli("run", "digits@1", "--variant", "b=digits@2:0.7", "--variant", "c=digits@2:0.3", "--source", "many",
              "--out", "w3", cwd=team)
    assert bad.returncode == 2 and "must sum to less than 1" in bad.stderr
    bad = cli("run", "digits@1", "--variant", "digits@2", "--source", "many", "--out", "w3", cwd=team)
    assert bad.returncode == 2 and "NAME=SPEC|REF:WEIGHT" in bad.stderr


def test_card_of_a_ref_and_of_an_unregistered_file(team: Path) -> None:
    cli("registry", "add", "mild.yaml", "--note", "baseline", cwd=team)
    cli("registry", "promote", "digits@1", "--reason", "reviewed the grid", cwd=team, user="bob")
    image = next((team / "src").rglob("*.png"))
    made = cli("card", "digits@1", "-o", "cards/digits.md", "--preview", str(image), cwd=team)
    assert made.returncode == 0, made.stderr
    text = (team / "cards" / "digits.md").read_text()
    assert "reviewed the grid" in text and "| bob |" in text and "approved" in text and "baseline" in text
    assert "| approved by | bob (" in text and "| registry audit | ok: " in text and "| as of | " in text
    assert (team / "cards" / "digits.preview.png").is_file() and "digits.preview.png" in text
    file_card = cli("card", "strong.yaml", "-o", "strong.md", cwd=team)
    assert file_card.returncode == 0 and "not registered" in file_card.stdout
    assert "not registered" in (team / "strong.md").read_text()


def test_the_dataset_is_the_same_whatever_names_the_version(team: Path, tmp_path: Path) -> None:
    """Bytes a data-versioning tool hashes never depend on whether a registry was found, and the dataset
    digest not on which REF named the version."""
    from augledger.mlflow import dataset_digest
    from helpers import tree_digests

    elsewhere = tmp_path / "elsewhere"  # no registry in it or its parents
    elsewhere.mkdir()
    (elsewhere / "mild.yaml").write_text((team / "mild.yaml").read_text())
    make_source(elsewhere / "src", 4)
    plain = cli("run", "mild.yaml", "--source", "src", "--out", "out", "--workers", "1", cwd=elsewhere)
    assert plain.returncode == 0, plain.stderr
    cli("registry", "add", "mild.yaml", cwd=team)
    cli("registry", "promote", "digits@1", "--reason", "ok", cwd=team, user="bob")
    cli("registry", "alias", "digits", "production", "1", cwd=team)
    runs = {"file": ("mild.yaml",), "version": ("digits@1",), "alias": ("digits@production",)}
    for name, spec in runs.items():
        done = cli("run", *spec, "--source", "src", "--out", name, "--workers", "1", cwd=team)
        assert done.returncode == 0, done.stderr
    # A spec file found in a registry: the same bytes as without one (run.json says which version it was).
    assert tree_digests(team / "file") == tree_digests(elsewhere / "out")
    assert json.loads((team / "file" / "run.json").read_text())["registry"]["version"] == 1
    # Named by a REF, the manifest and ledger header record it, and the dataset digest stays the same.
    assert json.loads((team / "alias" / "manifest.json").read_text())["registry"]["ref"] == "digits@production"
    digests = {name: dataset_digest(team / name) for name in runs}
    assert len(set(digests.values())) == 1, digests
    assert dataset_digest(elsewhere / "out") == digests["file"]
