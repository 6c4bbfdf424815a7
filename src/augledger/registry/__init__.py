"""Governed pipeline versions: a registry with a lifecycle, aliases and a tamper-evident history.

* :class:`Registry` (:mod:`~augledger.registry.core`): add, list, lifecycle moves, aliases, audit.
* :mod:`~augledger.registry.model`: versions, REFs, actors, the lifecycle table.
* :mod:`~augledger.registry.chain`: how history rows are hash-chained and replayed;
  :mod:`~augledger.registry.audit` checks the chain and tables against it.
* :mod:`~augledger.registry.tables`: the SQL tables and engines (SQLite file, PostgreSQL).
* :func:`resolve_spec` / :func:`load_spec` (:mod:`~augledger.registry.refs`): a REF wherever a spec
  file is accepted.

SQLAlchemy is imported only when a registry is opened: ``import augledger`` stays light.
"""

from augledger.registry.audit import AuditReport
from augledger.registry.chain import HistoryEntry
from augledger.registry.core import Registry
from augledger.registry.model import STATES, TRANSITIONS, AddResult, AliasMove, VersionInfo, current_actor, parse_ref
from augledger.registry.refs import SpecSource, load_spec, looks_like_ref, resolve_spec

__all__ = [
    "STATES",
    "TRANSITIONS",
    "AddResult",
    "AliasMove",
    "AuditReport",
    "HistoryEntry",
    "Registry",
    "SpecSource",
    "VersionInfo",
    "current_actor",
    "load_spec",
    "looks_like_ref",
    "parse_ref",
    "resolve_spec",
]
