"""What a verification found: one :class:`Problem` per finding, gathered in a :class:`VerifyReport`.

Shared by every kind of output folder's check (files: :mod:`augledger.run.verify`; tables:
:mod:`augledger.run.table_verify`), so the CLI renders one report type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Problem", "VerifyReport"]


@dataclass(frozen=True)
class Problem:
    """One finding: the key and copy it is about (``"*"``, 0 for the whole folder) and what is wrong."""

    key: str
    epoch: int
    message: str


@dataclass
class VerifyReport:
    """Outcome of a verification. ``ok`` is true only when every check passed."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    env_differences: str = ""
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems
