"""The history is tamper-evident: `audit` names the first row or stored spec that was edited behind its back."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from augledger.errors import AuditFailure
from augledger.registry import Registry
from helpers import standard_spec as spec


@pytest.fixture
def populated(backend: Any) -> Any:
    with backend.open(create=True) as reg:
        reg.add(spec(), actor="alice", note="first")
        reg.add(spec(rotate=25), actor="alice")
        reg.promote("digits-train@1", reason="reviewed", actor="bob")
        reg.set_alias("digits-train", "production", 1, actor="bob")
        reg.set_alias("digits-train", "production", 2, actor="bob")
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
    assert "alias digits-train@production points at 1 in the aliases table but 2 by its history" in audit(populated)[0]


def test_four_eyes_switched_off_in_the_table_is_caught(populated: Any) -> None:
    populated.execute("UPDATE augledger_meta SET value = ? WHERE key = ?", ("1", "single_user"))
    assert "single_user setting differs" in audit(populated)[0]


WRITER = textwrap.dedent("""
    import sys
    from augledger.registry import Registry
    url, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Registry(url) as reg:
        for i in range(n):
            reg.set_alias("digits-train", "production", 1 + (i % 3), reason=f"{me}-{i}", actor=me)
            reg.set_alias("digits-train", "staging", 1 + ((i + 1) % 3), reason=f"{me}-{i}", actor=me)
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
    assert {h.actor for h in moves} == {"w1", "w2"}
