"""Backends by modality, imported only when a spec names their modality.

``spec.py`` knows nothing of backends: a spec's ``modality`` is a plain name, looked up here when
the spec is compiled. Built-in backends are listed in :data:`_BUILTIN` by module name and imported
on first use, so ``import augledger`` loads no augmentation library. A host application can add a
backend in code with :func:`register_backend` (a spec can only *name* a registered modality; it can
never import anything).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from augledger.errors import SpecError
from augledger.ops.base import Backend
from augledger.spec import OpSpec, PipelineSpec

__all__ = ["get_backend", "modalities", "policy_vocabulary", "register_backend", "spec_json_schema"]

#: modality -> module that defines ``BACKEND``; imported on first use.
_BUILTIN: dict[str, str] = {
    "audio": "augledger.ops.audio",
    "image": "augledger.ops.image",
    "tabular": "augledger.ops.tabular",
    "text": "augledger.ops.text",
}
_loaders: dict[str, Callable[[], Backend]] = {}
_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


def _import_builtin(module: str) -> Callable[[], Backend]:
    def load() -> Backend:
        backend: Backend = importlib.import_module(module).BACKEND
        return backend

    return load


for _modality, _module in _BUILTIN.items():
    _loaders[_modality] = _import_builtin(_module)
del _modality, _module


def register_backend(modality: str, loader: Callable[[], Backend], *, replace: bool = False) -> None:
    """Make ``modality`` available to specs; ``loader()`` builds the backend on first use.

    Raises:
        ValueError: the modality is taken (pass ``replace=True`` to override it on purpose).
    """
    with _lock:
        if modality in _loaders and not replace:
            raise ValueError(f"modality {modality!r} already has a backend; pass replace=True to override it")
        _loaders[modality] = loader
        _loaded.pop(modality, None)


def modalities() -> tuple[str, ...]:
    """Every modality a spec may name, sorted."""
    return tuple(sorted(_loaders))


def get_backend(modality: str) -> Backend:
    """The backend of ``modality``, imported on first use.

    Raises:
        SpecError: no backend has that name (at location ``modality``, with the closest names).
        BackendError: the backend's optional dependencies are not installed (with the pip hint).
    """
    backend = _loaded.get(modality)
    if backend is not None:
        return backend
    with _lock:
        loader = _loaders.get(modality)
        if loader is None:
            close = difflib.get_close_matches(modality, list(_loaders), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"available: {', '.join(sorted(_loaders))}"
            raise SpecError(f"unknown modality {modality!r}; {hint}", location="modality")
        backend = _loaded[modality] = loader()
    return backend


def policy_vocabulary(modality: str, names: Iterable[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The op names of ``modality``, and which of ``names`` specs resolve to another op (deprecated
    aliases such as ``ShiftScaleRotate`` -> ``Affine``), found by resolving each through the backend."""
    backend = get_backend(modality)
    known = backend.op_names()
    aliases: dict[str, str] = {}
    for name in {n.rpartition(".")[2] for n in names} & set(known):
        try:
            resolved = backend.resolve_ops([OpSpec(op=name)])
        except SpecError:  # needs params to resolve (RandomCrop's size): not an alias
            continue
        target = str(resolved[0]["op"]).rpartition(".")[2]
        if target != name:
            aliases[name] = target
    return known, aliases


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of a spec document: the modalities, each one's op names and ``targets`` section."""
    schema = PipelineSpec.model_json_schema(by_alias=True)
    schema["title"] = "augledger pipeline spec"
    props = schema["properties"]
    props["modality"]["enum"] = list(modalities())
    names: list[str] = []
    branches: list[dict[str, Any]] = []
    for modality in modalities():
        backend = get_backend(modality)
        bare = backend.op_names()
        names += [*bare, *(f"{backend.namespace}.{n}" for n in bare)]
        branches.append({
            "if": {"properties": {"modality": {"const": modality}}},
            "then": {"properties": {"targets": _inline_refs(copy.deepcopy(backend.targets_schema()))}},
        })
    op_def = schema.get("$defs", {}).get("OpSpec", {}).get("properties", {}).get("op")
    if op_def is not None:
        op_def["enum"] = sorted(set(names))
    if branches:
        schema["allOf"] = branches
    return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``{"$ref": "#/$defs/X"}`` by the definition itself, so a section can be nested anywhere."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result
