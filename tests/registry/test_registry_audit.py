"""The history is tamper-evident: `audit` names the first row or stored spec that was edited behind its back."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from augledger.errors import AuditFailure, LifecycleError
from augledger.registry import Registry
from helpers import standard_spec as spec


@pytest.fixture
def populated(backend: Any) -> Any:
    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice", note="first")
        reg.add(spec(rotate=25), actor="alice")
        reg.promote("digits-train@1", reason="reviewed", actor="bob")
        reg.set_alias("digits-train", "production", 1, actor="bob")
        reg.set_alias("digits-train", "production", 2, actor="bob", allow_unapproved=True)
        assert reg.audit().ok and reg.audit().rows == 6
    return backend


def audit(backend: Any) -> list[str]:
    with backend.open() as reg:
        return reg.audit().problems


def test_untouched_registry_audits_clean(populated: Any) -> None:
    with populated.open() as reg:
        report = reg.check()
    assert (report.rows, report.versions, report.problems) == (6, 2, [])


def test_edited_history_row_is_named(populated: Any) -> None:
    populated.execute("UPDATE augledger_history SET actor = ? WHERE seq = ?", ("mallory", 3))
    problems = audit(populated)
    assert problems[0].startswith("history row 3 ") and "the row was edited" in problems[0]
    with populated.open() as reg, pytest.raises(AuditFailure, match="history row 3"):
        reg.check()


def test_edited_reason_is_caught(populated: Any) -> None:
    populated.execute("UPDATE augledger_history SET reason = ? WHERE seq = ?", ("rubber-stamped", 4))
    assert audit(populated)[0].startswith("history row 4 ")


def test_removed_row_is_caught(populated: Any) -> None:
    populated.execute("DELETE FROM augledger_history WHERE seq = ?", (3,))
    assert "history row 3 is missing" in audit(populated)[0]


def test_removed_last_row_is_caught_by_the_head(populated: Any) -> None:
    populated.execute("DELETE FROM augledger_history WHERE seq = ?", (6,))
    problems = audit(populated)
    assert "head hash does not match the last history row (5)" in problems[0]


def test_edited_stored_spec_is_caught(populated: Any) -> None:
    with populated.open() as reg:
        stored = reg.get("digits-train@1").spec
    stored["ops"][1]["params"]["rotate"] = [-90, 90]
    populated.execute("UPDATE augledger_versions SET spec = ? WHERE name = ? AND version = ?",
                      (json.dumps(stored), "digits-train", 1))
    problems = audit(populated)
    assert problems[0].startswith("the stored spec of digits-train@1 does not match its fingerprint")


def test_edited_unfingerprinted_field_is_caught(populated: Any) -> None:
    with populated.open() as reg:
        stored = reg.get("digits-train@2").spec
    stored["seed"] = 4242
    populated.execute("UPDATE augledger_versions SET spec = ? WHERE name = ? AND version = ?",
                      (json.dumps(stored), "digits-train", 2))
    assert "stored spec of digits-train@2 differs from the one added" in audit(populated)[0]


def test_state_edited_in_the_table_is_caught(populated: Any) -> None:
    populated.execute("UPDATE augledger_versions SET state = ? WHERE version = ?", ("approved", 2))
    assert audit(populated)[0] == ("digits-train@2 is 'approved' in the versions table but 'draft' by its history "
                                   "(the state was edited outside the registry)")


def test_alias_moved_in_the_table_is_caught(populated: Any) -> None:
    populated.execute("UPDATE augledger_aliases SET version = ? WHERE alias = ?", (1, "production"))
    assert "alias digits-train@production points at 1 (previously 1) in the aliases table but 2 (previously 1)" in audit(populated)[0]


def test_four_eyes_switched_off_in_the_table_is_caught(populated: Any) -> None:
    populated.execute("UPDATE augledger_meta SET value = ? WHERE key = ?", ("1", "single_user"))
    assert "single_user setting differs" in audit(populated)[0]


WRITER = textwrap.dedent("""
    import sys
    from augledger.registry import Registry
    url, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # Each writer alternates between two targets, one of which the other never uses: every other move
    # of each writer changes the alias whatever the interleaving, so both writers' moves are recorded.
    production, staging = {"w1": ((2, 3), (1, 3)), "w2": ((1, 2), (2, 3))}[me]
    with Registry(url) as reg:
        for i in range(n):
            reg.set_alias("digits-train", "production", production[i % 2], reason=f"{me}-{i}", actor=me,
                          allow_unapproved=True)
            reg.set_alias("digits-train", "staging", staging[i % 2], reason=f"{me}-{i}", actor=me,
                          allow_unapproved=True)
""")


def test_two_concurrent_writer_processes_lose_no_move(backend: Any) -> None:
    with backend.open(create=True) as reg:
        for r in (10, 20, 30):
            reg.add(spec(rotate=r), actor="alice")
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, backend.url, who, str(n)], stderr=subprocess.PIPE, text=True)
             for who in ("w1", "w2")]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with Registry(backend.url) as reg:
        report = reg.audit()
        assert report.ok, report.problems
        moves = [h for h in reg.history() if h.action == "alias"]
        aliases = reg.aliases("digits-train")
    # Every call recorded exactly one move (a no-op move to the same target records nothing, so count reasons).
    reasons = {(h.detail["alias"], h.reason) for h in moves}
    assert len(moves) == len(reasons)
    for alias in ("production", "staging"):
        chain = [h for h in moves if h.detail["alias"] == alias]
        # No lost update: each move starts from where the one before it left the alias.
        for before, after in itertools.pairwise(chain):
            assert after.detail["from"] == before.detail["to"], (before, after)
        assert aliases[("digits-train", alias)][0] == chain[-1].detail["to"]
        assert aliases[("digits-train", alias)][1] == chain[-1].detail["from"]
    for alias in ("production", "staging"):  # each writer's moves to its own target always change the alias
        assert {h.actor for h in moves if h.detail["alias"] == alias} == {"w1", "w2"}
    assert len(moves) >= 2 * n  # at least the half of each writer's 2n calls that cannot be no-ops


@pytest.mark.parametrize(("column", "value"), [("added_by", "bob"), ("added_at", "2020-01-01T00:00:00+00:00"),
                                               ("note", "something else")])
def test_edited_version_metadata_is_caught(populated: Any, column: str, value: str) -> None:
    populated.execute(f"UPDATE augledger_versions SET {column} = ? WHERE version = ?", (value, 1))
    assert audit(populated)[0].startswith(f"digits-train@1's {column} is {value!r} in the versions table")


def test_edited_added_by_cannot_defeat_four_eyes(backend: Any) -> None:
    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice")
    backend.execute("UPDATE augledger_versions SET added_by = ? WHERE version = ?", ("bob", 1))
    with backend.open() as reg, pytest.raises(AuditFailure, match="added_by is 'bob' in the versions table but 'alice'"):
        reg.promote("digits-train@1", reason="lgtm", actor="alice")


def test_edited_alias_previous_is_caught_and_not_rolled_back_to(populated: Any) -> None:
    with populated.open() as reg:
        reg.add(spec(rotate=40), actor="alice")
    populated.execute("UPDATE augledger_aliases SET previous = ? WHERE alias = ?", (3, "production"))
    assert "points at 2 (previously 3) in the aliases table but 2 (previously 1) by its history" in audit(populated)[0]
    with populated.open() as reg, pytest.raises(AuditFailure, match="previously 3"):
        reg.rollback("digits-train", "production")


def test_verified_resolution_refuses_an_edited_state_or_spec(populated: Any) -> None:
    from augledger.registry import resolve_spec

    populated.execute("UPDATE augledger_versions SET state = ? WHERE version = ?", ("approved", 2))
    with populated.open() as reg:
        assert reg.get("digits-train@2").state == "approved"  # unverified: the table as it is
        with pytest.raises(AuditFailure, match="'approved' in the versions table but 'draft' by its history"):
            resolve_spec("digits-train@2", registry=reg, require_approved=True)
    populated.execute("UPDATE augledger_versions SET state = ? WHERE version = ?", ("draft", 2))
    with populated.open() as reg:
        stored = reg.get("digits-train@1")
    edited = stored.spec
    edited["ops"][1]["params"]["rotate"] = [-45, 45]
    from augledger._canonical import canonical_json, fingerprint_of

    populated.execute("UPDATE augledger_versions SET spec = ?, fingerprint = ? WHERE version = ?",
                      (canonical_json(edited).decode(), fingerprint_of(edited), 1))
    with populated.open() as reg, pytest.raises(AuditFailure, match="stored spec of digits-train@1 does not match its fingerprint"):
        resolve_spec("digits-train@1", registry=reg)


CREATOR = textwrap.dedent("""
    import sys, time
    from augledger.registry import Registry
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process imported: all start together
    with Registry(sys.argv[1], create=True) as reg:
        print(int(reg.created))
""")


def test_processes_creating_the_registry_at_once_make_one_registry(backend: Any) -> None:
    import time

    start = str(time.time() + 4.0)
    procs = [subprocess.Popen([sys.executable, "-c", CREATOR, backend.url, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["0"] * 5 + ["1"]  # exactly one of them created it
    with backend.open() as reg:
        assert [h.action for h in reg.history()] == ["init"] and reg.audit().ok


AUDITOR = textwrap.dedent("""
    import sys, time
    from augledger.registry import Registry
    failures, runs, deadline = [], 0, time.monotonic() + float(sys.argv[2])
    with Registry(sys.argv[1]) as reg:
        while time.monotonic() < deadline:
            report = reg.audit()
            runs += 1
            failures += report.problems
    print(runs, len(failures), failures[:1])
""")


def test_audit_during_concurrent_writes_sees_one_snapshot(backend: Any) -> None:
    with backend.open(create=True) as reg:
        for r in (10, 20, 30):
            reg.add(spec(rotate=r), actor="alice")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, backend.url, who, "10"], stderr=subprocess.PIPE, text=True)
               for who in ("w1", "w2")]
    auditor = subprocess.run([sys.executable, "-c", AUDITOR, backend.url, "4"], capture_output=True, text=True, timeout=240)
    for w in writers:
        w.communicate(timeout=240)
    runs, failures, first = auditor.stdout.split(" ", 2)
    assert int(runs) > 3 and int(failures) == 0, first


def test_a_deleted_versions_number_is_never_reused(backend: Any) -> None:
    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice")
        reg.add(spec(rotate=20), actor="alice")
    backend.execute("DELETE FROM augledger_versions WHERE version = ?", (2,))
    with backend.open() as reg:
        again = reg.add(spec(rotate=35), actor="alice").version
        assert again.version == 3
        assert any("digits-train@2 was added" in p and "gone from the versions table" in p for p in reg.audit().problems)


def test_an_unreachable_server_is_not_an_empty_registry() -> None:
    from augledger.errors import RegistryError, RegistryNotFound

    with pytest.raises(RegistryError, match="cannot open the registry") as caught:
        Registry("postgresql://nobody@127.0.0.1:1/nothing")
    assert not isinstance(caught.value, RegistryNotFound)


def test_an_edited_alias_row_is_not_laundered_by_the_next_move(backend: Any) -> None:
    with backend.open(create=True) as reg:
        for r in (10, 20, 30):
            reg.add(spec(rotate=r), actor="alice")
        for ref in ("digits-train@1", "digits-train@2"):
            reg.promote(ref, reason="ok", actor="bob")
        reg.set_alias("digits-train", "production", 2, actor="bob")
    backend.execute("UPDATE augledger_aliases SET version = ? WHERE alias = ?", (3, "production"))  # a draft
    with backend.open() as reg:
        with pytest.raises(AuditFailure, match=r"3 .*in the aliases table but (at )?2"):
            reg.set_alias("digits-train", "production", 1, actor="bob")
        with pytest.raises(AuditFailure, match=r"3 .*in the aliases table but (at )?2"):
            reg.get("digits-train@production", verified=True)


def test_rollback_never_lands_on_a_draft(backend: Any) -> None:
    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice")
        reg.add(spec(rotate=30), actor="alice")
        reg.promote("digits-train@2", reason="ok", actor="bob")
        reg.set_alias("digits-train", "staging", 1, actor="bob", allow_unapproved=True)
        reg.set_alias("digits-train", "staging", 2, actor="bob")
        with pytest.raises(LifecycleError, match="would roll back to digits-train@1, a draft"):
            reg.rollback("digits-train", "staging")


def test_a_forged_self_approval_is_refused_when_used(backend: Any) -> None:
    from augledger.registry import resolve_spec
    from augledger.registry.chain import GENESIS, entry_hash

    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice")
        last = reg.history()[-1]
    # Alice appends a correctly chained promote row as herself, and moves the state and head along.
    fields = {"seq": last.seq + 1, "at": "2026-12-03T00:00:00+00:00", "actor": "alice", "action": "promote",
              "name": "digits-train", "version": 1, "reason": "mine", "detail": {"from": "draft", "to": "approved"},
              "prev_hash": last.hash}
    digest = entry_hash(fields)
    assert digest != GENESIS
    backend.execute("INSERT INTO augledger_history (seq, at, actor, action, name, version, reason, detail, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (fields["seq"], fields["at"], "alice", "promote", "digits-train", 1, "mine",
                     json.dumps(fields["detail"], sort_keys=True, separators=(",", ":")), last.hash, digest))
    backend.execute("UPDATE augledger_meta SET value = ? WHERE key = ?", (digest, "head"))
    backend.execute("UPDATE augledger_versions SET state = ? WHERE version = ?", ("approved", 1))
    with backend.open() as reg:
        assert any("approved by 'alice', who added it" in p for p in reg.audit().problems)
        with pytest.raises(AuditFailure, match="approved by 'alice', who added it"):
            resolve_spec("digits-train@1", registry=reg, require_approved=True)


def test_created_says_whether_this_call_made_the_registry(backend: Any) -> None:
    with backend.open(create=True) as first:
        assert first.created
    with backend.open(create=True) as second:
        assert not second.created


RESOLVER = textwrap.dedent("""
    import sys, time
    from augledger.registry import Registry
    failures, runs, deadline = [], 0, time.monotonic() + float(sys.argv[2])
    with Registry(sys.argv[1]) as reg:
        while time.monotonic() < deadline:
            try:
                reg.get("digits-train@production", verified=True)
            except Exception as exc:
                failures.append(str(exc))
            runs += 1
    print(runs, len(failures), failures[:1])
""")


def test_resolving_a_ref_during_alias_moves_sees_one_snapshot(backend: Any) -> None:
    with backend.open(create=True) as reg:
        for r in (10, 20, 30):
            reg.add(spec(rotate=r), actor="alice")
        reg.set_alias("digits-train", "production", 1, actor="bob", allow_unapproved=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, backend.url, who, "10"], stderr=subprocess.PIPE, text=True)
               for who in ("w1", "w2")]
    resolver = subprocess.run([sys.executable, "-c", RESOLVER, backend.url, "4"], capture_output=True, text=True,
                              timeout=240)
    assert [w.communicate(timeout=240)[1] is not None and w.returncode for w in writers] == [0, 0]
    runs, failures, first = resolver.stdout.split(" ", 2)
    assert int(runs) > 3 and int(failures) == 0, first
