"""The registry's promises, on SQLite and PostgreSQL: content addressing, lifecycle, four eyes, aliases, audit."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

import augledger
from augledger.errors import LifecycleError, RegistryError
from augledger.registry import STATES, TRANSITIONS, Registry, parse_ref
from helpers import standard_spec as spec

YAML_A = """
schema: 1
name: digits-train
seed: 1234
ops:
  - {op: HorizontalFlip, p: 0.5}
  - {op: Affine, p: 0.7, params: {rotate: [-15, 15], scale: [0.9, 1.1]}}
"""
# The same content: keys in another order, comments, flow vs block style, 0.50 for 0.5.
YAML_B = """
# a comment that changes nothing
ops:
  - p: 0.50
    op: HorizontalFlip
  - op: Affine
    params: {scale: [0.9, 1.1], rotate: [-15, 15]}   # same params, other order
    p: 0.7
seed: 1234
name: digits-train
schema: 1
"""


def test_content_addressing_ignores_key_order_comments_and_formatting(registry: Registry) -> None:
    a = registry.add(augledger.loads_spec(YAML_A), actor="alice")
    b = registry.add(augledger.loads_spec(YAML_B), actor="bob")
    assert a.created and not b.created
    assert b.version.ref == a.version.ref == "digits-train@1"
    assert b.version.added_by == "alice"  # the no-op did not touch the stored version
    c = registry.add(spec(rotate=20), actor="alice")
    assert c.created and c.version.version == 2
    assert [v.version for v in registry.versions("digits-train")] == [1, 2]
    assert len([h for h in registry.history() if h.action == "add"]) == 2


def test_same_fingerprint_other_seed_is_the_same_version_and_says_so(registry: Registry) -> None:
    registry.add(spec(), actor="alice")
    again = registry.add(spec(seed=99, description="renamed"), actor="alice")
    assert not again.created and again.version.version == 1
    assert set(again.differs) == {"seed", "description"}
    assert again.version.spec["seed"] == 1234


def test_versions_are_numbered_per_name(registry: Registry) -> None:
    registry.add(spec(), actor="a")
    other = registry.add(spec(name="other"), actor="a")
    assert other.version.ref == "other@1"  # same content, another name: its own line of versions
    assert registry.add(spec(rotate=30), actor="a").version.ref == "digits-train@2"


def test_stored_spec_round_trips_to_the_same_fingerprint(registry: Registry) -> None:
    added = registry.add(spec(), actor="a").version
    pipe = augledger.compile_spec(registry.get("digits-train@1").pipeline_spec())
    assert pipe.fingerprint == added.fingerprint == augledger.compile_spec(augledger.parse_spec(spec())).fingerprint


ALL_MOVES = [(a, b) for a, b in itertools.product(STATES, STATES) if a != b]


def _bring_to(reg: Registry, state: str) -> str:
    ref = reg.add(spec(), actor="alice").version.ref
    path = {"draft": [], "approved": ["approved"], "deprecated": ["approved", "deprecated"], "retired": ["retired"]}[state]
    for step in path:
        reg.transition(ref, step, reason="setup", actor="bob")
    assert reg.get(ref).state == state
    return ref


@pytest.mark.parametrize(("start", "to"), ALL_MOVES, ids=[f"{a}-to-{b}" for a, b in ALL_MOVES])
def test_every_lifecycle_transition_legal_or_refused(registry: Registry, start: str, to: str) -> None:
    ref = _bring_to(registry, start)
    if to == "draft":
        with pytest.raises(LifecycleError, match="the new state must be approved, deprecated or retired"):
            registry.transition(ref, to, reason="back", actor="bob")
    elif to in TRANSITIONS[start]:
        moved = registry.transition(ref, to, reason="because", actor="bob")
        assert moved.state == to == registry.get(ref).state
        last = registry.history()[-1]
        assert (last.actor, last.reason, last.detail) == ("bob", "because", {"from": start, "to": to})
    else:
        allowed = ", ".join(TRANSITIONS[start]) or "nothing (retired is final)"
        with pytest.raises(LifecycleError, match=re.escape(f"is {start}; it can move to {allowed}, not to {to}")):
            registry.transition(ref, to, reason="because", actor="bob")
        assert registry.get(ref).state == start
    assert registry.audit().ok


def test_a_reason_is_required(registry: Registry) -> None:
    ref = registry.add(spec(), actor="alice").version.ref
    with pytest.raises(LifecycleError, match="a reason is required"):
        registry.transition(ref, "approved", reason="  ", actor="bob")


def test_four_eyes_refuses_self_approval(registry: Registry) -> None:
    ref = registry.add(spec(), actor="alice").version.ref
    with pytest.raises(LifecycleError, match="four eyes: 'alice' added digits-train@1 and cannot also approve it"):
        registry.promote(ref, reason="lgtm", actor="alice")
    assert registry.get(ref).state == "draft"
    assert registry.promote(ref, reason="reviewed", actor="bob").state == "approved"


def test_four_eyes_uses_augledger_user(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGLEDGER_USER", "carol")
    ref = registry.add(spec()).version.ref
    assert registry.get(ref).added_by == "carol"
    with pytest.raises(LifecycleError, match="four eyes"):
        registry.promote(ref, reason="mine")
    monkeypatch.setenv("AUGLEDGER_USER", "dave")
    assert registry.promote(ref, reason="reviewed").state == "approved"
    assert registry.history()[-1].actor == "dave"


def test_single_user_registry_allows_self_approval(backend: Any) -> None:
    with backend.open(create=True, single_user=True) as reg:
        assert reg.single_user
        ref = reg.add(spec(), actor="alice").version.ref
        assert reg.promote(ref, reason="solo project", actor="alice").state == "approved"
        assert reg.history()[0].detail == {"format": 1, "single_user": True}
    with backend.open(create=True, single_user=False) as again:  # fixed for the registry's life
        assert again.single_user


def test_aliases_move_and_roll_back(registry: Registry) -> None:
    for r in (15, 20, 25):
        registry.add(spec(rotate=r), actor="alice")
    for ref in ("digits-train@1", "digits-train@3"):
        registry.promote(ref, reason="ok", actor="bob")
    move = registry.set_alias("digits-train", "production", 1, actor="bob")
    assert (move.previous, move.version) == (None, 1)
    assert registry.get("digits-train@production").version == 1
    registry.set_alias("digits-train", "production", 3, reason="blue/green switch", actor="bob", allow_unapproved=True)
    assert registry.get("digits-train@production").version == 3
    back = registry.rollback("digits-train", "production", reason="regression", actor="bob")
    assert (back.previous, back.version) == (3, 1)
    assert registry.get("digits-train@production").version == 1
    again = registry.rollback("digits-train", "production", actor="bob")  # a second rollback undoes the first
    assert registry.get("digits-train@production").version == 3 and again.previous == 1
    actions = [(h.action, h.detail) for h in registry.history("digits-train") if h.action in ("alias", "rollback")]
    assert actions == [
        ("alias", {"alias": "production", "from": None, "to": 1}),
        ("alias", {"alias": "production", "from": 1, "to": 3}),
        ("rollback", {"alias": "production", "from": 3, "to": 1}),
        ("rollback", {"alias": "production", "from": 1, "to": 3}),
    ]
    assert registry.audit().ok


def test_alias_rules(registry: Registry) -> None:
    registry.add(spec(), actor="alice")
    with pytest.raises(RegistryError, match="must start with a letter"):
        registry.set_alias("digits-train", "2", 1)
    with pytest.raises(RegistryError, match="no version 7"):
        registry.set_alias("digits-train", "production", 7)
    with pytest.raises(LifecycleError, match=r"digits-train@1 is draft, not approved: approve it first .*--allow-unapproved"):
        registry.set_alias("digits-train", "production", 1)
    with pytest.raises(RegistryError, match="never been moved"):
        registry.set_alias("digits-train", "staging", 1, allow_unapproved=True)
        registry.rollback("digits-train", "staging")
    with pytest.raises(LifecycleError, match="target of alias"):
        registry.retire("digits-train@1", reason="old", actor="bob")


def test_an_alias_cannot_point_at_a_retired_version(registry: Registry) -> None:
    registry.add(spec(), actor="alice")
    registry.retire("digits-train@1", reason="never used", actor="bob")
    with pytest.raises(LifecycleError, match="retired"):
        registry.set_alias("digits-train", "production", 1)


def test_unknown_refs_list_what_exists(registry: Registry) -> None:
    registry.add(spec(), actor="a")
    registry.set_alias("digits-train", "production", 1, allow_unapproved=True)
    with pytest.raises(RegistryError, match=r"no version 9 .*versions: 1"):
        registry.get("digits-train@9")
    with pytest.raises(RegistryError, match=r"no alias 'prod' .*aliases: production"):
        registry.get("digits-train@prod")
    with pytest.raises(RegistryError, match=r"no spec named 'digits' .*registered: digits-train"):
        registry.get("digits@1")
    with pytest.raises(RegistryError, match="NAME@VERSION"):
        parse_ref("digits-train")


def test_a_name_with_at_sign_cannot_be_registered(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"must\s+not contain '@'"):
        registry.add(spec(name="team@digits"))


def test_missing_registry_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(RegistryError, match=r"no registry at .*augledger registry init"):
        Registry(tmp_path / "nope.db")


def test_rollback_may_return_to_a_version_deprecated_since(registry: Registry) -> None:
    registry.add(spec(), actor="alice")
    registry.add(spec(rotate=30), actor="alice")
    for ref in ("digits-train@1", "digits-train@2"):
        registry.promote(ref, reason="ok", actor="bob")
    registry.set_alias("digits-train", "production", 1, actor="bob")
    registry.set_alias("digits-train", "production", 2, actor="bob")
    registry.deprecate("digits-train@1", reason="superseded by 2", actor="bob")
    back = registry.rollback("digits-train", "production", reason="incident", actor="bob")
    assert back.version == 1 and registry.get("digits-train@production").state == "deprecated"
