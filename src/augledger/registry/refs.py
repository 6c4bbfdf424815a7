"""Using registered versions: everywhere a spec file is accepted, a REF (``NAME@VERSION``, ``NAME@ALIAS``) is too.

:func:`resolve_spec` turns what a user gave into a :class:`SpecSource`: the spec, and where it came
from (the REF as given, the version and fingerprint it resolved to), which runs record in their
manifest and ledger. Lifecycle rules apply here: a deprecated version warns
(:class:`~augledger.errors.DeprecatedVersionWarning`), a retired one is refused, and with
``require_approved`` (or ``AUGLEDGER_REQUIRE_APPROVED=1``) anything not approved is refused, a spec
file included unless the registry holds it, approved, under its name.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augledger.errors import DeprecatedVersionWarning, LifecycleError, SpecError

if TYPE_CHECKING:
    from augledger.pipeline import Pipeline
    from augledger.registry.core import Registry
    from augledger.registry.model import VersionInfo
    from augledger.spec import PipelineSpec

__all__ = ["REQUIRE_APPROVED_VAR", "SpecSource", "load_spec", "looks_like_ref", "require_approved_default", "resolve_spec"]

REQUIRE_APPROVED_VAR = "AUGLEDGER_REQUIRE_APPROVED"
_REF = re.compile(r"[^/\\@]+@[A-Za-z0-9][A-Za-z0-9_.-]*")
_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def looks_like_ref(text: str | Path) -> bool:
    """A REF is ``NAME@VERSION`` or ``NAME@ALIAS``; an existing file, or a name ending in .yaml/.yml/.json, is a path."""
    s = str(text)
    return not Path(s).exists() and not s.lower().endswith(_SPEC_SUFFIXES) and bool(_REF.fullmatch(s))


def require_approved_default() -> bool:
    return os.environ.get(REQUIRE_APPROVED_VAR, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SpecSource:
    """A spec and where it came from.

    Attributes:
        spec: the validated spec.
        given: the path or REF as the user gave it.
        version: the registry version it resolved to (``None`` for a spec file not looked up).
        registry: where that registry is (password hidden), or ``None``.
    """

    spec: PipelineSpec
    given: str
    version: VersionInfo | None = None
    registry: str | None = None

    @property
    def is_ref(self) -> bool:
        return self.version is not None and looks_like_ref(self.given)

    def compile(self) -> Pipeline:
        """Compile the spec; a registered version must still resolve to its registered fingerprint.

        Raises:
            LifecycleError: it resolves to another fingerprint here (other library versions resolve
                the ops differently), so it is not the version that was approved.
        """
        from augledger.pipeline import compile_spec

        pipe = compile_spec(self.spec)
        if self.version is not None and pipe.fingerprint != self.version.fingerprint:
            raise LifecycleError(
                f"{self.version.ref} was registered as {self.version.fingerprint} but resolves to {pipe.fingerprint} "
                "in this environment (other library versions); it is not the version that was registered"
            )
        return pipe

    def provenance(self) -> dict[str, Any] | None:
        """What a run records: the REF as given, the version, its state and fingerprint (``None`` without a registry)."""
        if self.version is None:
            return None
        return {"ref": self.given if self.is_ref else None, "name": self.version.name, "version": self.version.version,
                "fingerprint": self.version.fingerprint, "state": self.version.state, "registry": self.registry}


def _open(registry: Registry | str | Path | None) -> Registry:
    from augledger.registry.core import Registry

    return registry if isinstance(registry, Registry) else Registry(registry)


def _described(given: str, info: VersionInfo) -> str:
    return info.ref if given == info.ref else f"{given} ({info.ref})"


def resolve_spec(
    source: str | Path, /, *, registry: Registry | str | Path | None = None, require_approved: bool | None = None,
    lookup: bool = False, allow_retired: bool = False,
) -> SpecSource:
    """Load a spec file or resolve a registry REF, applying the lifecycle rules (module docstring).

    Args:
        registry: the registry (a :class:`~augledger.registry.Registry`, a path or a URL); default
            ``$AUGLEDGER_REGISTRY``, else the nearest ``.augledger/registry.db`` up from the current folder.
        require_approved: refuse anything not approved (default ``$AUGLEDGER_REQUIRE_APPROVED``).
        lookup: also look a spec file up in the registry (when there is one), so that a run records
            its version and the lifecycle rules apply to it (``augledger run`` does).
        allow_retired: warn about a retired version instead of refusing it (read-only commands).

    Raises:
        SpecError: a spec file is missing or invalid.
        RegistryError: the REF does not resolve (the message lists what exists).
        LifecycleError: the version is retired, or not approved while approval is required.
        AuditFailure: the version's row disagrees with its history (an edited registry).
    """
    from augledger.errors import RegistryNotFound

    strict = require_approved_default() if require_approved is None else require_approved
    given = str(source)
    if looks_like_ref(given):
        reg = _open(registry)
        where = reg.where
        try:
            info: VersionInfo | None = reg.get(given, verified=True)
        finally:
            if reg is not registry:
                reg.close()
        assert info is not None
        spec = _stored_spec(info)
    else:
        from augledger.spec import load_spec as load_spec_file

        spec = load_spec_file(source)
        if not strict and not lookup:
            return SpecSource(spec, given)
        from augledger.pipeline import compile_spec

        try:
            reg = _open(registry)
        except RegistryNotFound:
            if strict:
                raise
            return SpecSource(spec, given)  # no registry here: nothing to look up
        where = reg.where
        try:
            info = reg.find(spec.name, compile_spec(spec).fingerprint)
            if info is not None:
                info = reg.get(info.ref, verified=True)
        finally:
            if reg is not registry:
                reg.close()
        if info is None:
            if strict:
                raise LifecycleError(
                    f"approval is required ({REQUIRE_APPROVED_VAR} / --require-approved), and spec file {given!r} is "
                    "not in the registry; register it (`augledger registry add`) and have another person approve it"
                )
            return SpecSource(spec, given)
    what = _described(given, info) if looks_like_ref(given) else f"spec file {given!r} ({info.ref})"
    if info.state == "retired":
        message = f"{what} is retired and can no longer be used; pick another version"
        if not allow_retired:
            raise LifecycleError(message)
        warnings.warn(DeprecatedVersionWarning(message.replace("can no longer be used; pick another version",
                                                               "(shown for the record)")), stacklevel=2)
    elif strict and info.state != "approved":
        raise LifecycleError(f"approval is required ({REQUIRE_APPROVED_VAR} / --require-approved), and {what} is "
                             f"{info.state}" + ("; have another person approve it" if info.state == "draft" else ""))
    elif info.state == "deprecated":
        warnings.warn(DeprecatedVersionWarning(f"{what} is deprecated; move to a newer version"), stacklevel=2)
    return SpecSource(spec, given, info, where)


def _stored_spec(info: VersionInfo) -> PipelineSpec:
    try:
        return info.pipeline_spec()
    except SpecError as exc:
        raise SpecError(f"{info.ref} in the registry no longer validates: {exc}") from None


def load_spec(
    source: str | Path, /, *, registry: Registry | str | Path | None = None, require_approved: bool | None = None
) -> PipelineSpec:
    """Load and validate a spec file (``.yaml``, ``.yml``, ``.json``) or a registry REF (``digits@production``).

    A REF is looked up in ``registry`` (default ``$AUGLEDGER_REGISTRY`` or ``.augledger/registry.db``);
    a deprecated version warns, a retired one is refused (see :func:`resolve_spec`).
    For YAML or JSON text in a string, use :func:`augledger.loads_spec`.
    """
    return resolve_spec(source, registry=registry, require_approved=require_approved).spec
