"""What the registry hands out: versions, add results, alias moves; REFs and actors; the lifecycle table."""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from augledger.errors import RegistryError

if TYPE_CHECKING:
    from augledger.spec import PipelineSpec

__all__ = [
    "ALIAS_PATTERN", "STATES", "TRANSITIONS", "AddResult", "AliasMove", "VersionInfo", "current_actor", "parse_ref",
]

STATES = ("draft", "approved", "deprecated", "retired")
#: state -> the states it may move to.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("approved", "retired"),
    "approved": ("deprecated",),
    "deprecated": ("approved", "retired"),
    "retired": (),
}
ALIAS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")


def current_actor() -> str:
    """Who is acting: ``$AUGLEDGER_USER``, else the OS user."""
    actor = os.environ.get("AUGLEDGER_USER", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user database entry (some containers)
        return f"uid-{os.getuid()}"


def parse_ref(ref: str) -> tuple[str, int | str]:
    """``NAME@VERSION`` -> ``(name, version)``; ``NAME@ALIAS`` -> ``(name, alias)``.

    Raises:
        RegistryError: not of that form.
    """
    name, at, selector = str(ref).rpartition("@")
    if not at or not name or not selector:
        raise RegistryError(f"REF {ref!r} must be NAME@VERSION (e.g. digits@2) or NAME@ALIAS (e.g. digits@production)")
    if re.fullmatch(r"[0-9]+", selector):
        return name, int(selector)
    if not ALIAS_PATTERN.fullmatch(selector):
        raise RegistryError(f"REF {ref!r}: {selector!r} is neither a version number (digits, e.g. 2) nor an alias "
                            "(starting with a letter, e.g. production)")
    return name, selector


@dataclass(frozen=True)
class VersionInfo:
    """One registered pipeline version."""

    name: str
    version: int
    fingerprint: str
    state: str
    added_by: str
    added_at: str
    note: str | None
    #: The resolved spec as stored (canonical JSON); :attr:`spec` parses it.
    spec_text: str = field(repr=False)

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved spec (a new dict on every access)."""
        data: dict[str, Any] = json.loads(self.spec_text)
        return data

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def pipeline_spec(self) -> PipelineSpec:
        """The stored resolved spec as a :class:`~augledger.PipelineSpec`."""
        from augledger.spec import parse_spec

        return parse_spec(self.spec, source=self.ref)

    def to_dict(self, *, with_spec: bool = False) -> dict[str, Any]:
        data = {"name": self.name, "version": self.version, "ref": self.ref, "fingerprint": self.fingerprint,
                "state": self.state, "added_by": self.added_by, "added_at": self.added_at, "note": self.note}
        return {**data, "spec": self.spec} if with_spec else data


@dataclass(frozen=True)
class AddResult:
    version: VersionInfo
    created: bool
    #: Unfingerprinted parts (seed, description, policy) of the added spec that differ from the stored version.
    differs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AliasMove:
    name: str
    alias: str
    previous: int | None
    version: int
    changed: bool = True
