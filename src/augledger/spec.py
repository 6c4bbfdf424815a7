"""The pipeline spec: strict, declarative, data only.

A spec is a YAML or JSON document. It is validated by strict pydantic models (unknown keys are
errors), loaded with a safe loader (no Python tags, no duplicate keys), and never names import
paths: ops are looked up on an allowlist by name. Compiling a spec fills in every default
(:func:`augledger.compile`); the fingerprint is the SHA-256 of the canonical JSON of that resolved form.

Example::

    schema: 1
    name: digits-train
    seed: 1234
    modality: image
    ops:
      - {op: HorizontalFlip, p: 0.5}
      - {op: Affine, p: 0.7, params: {rotate: [-15, 15], scale: [0.9, 1.1]}}
"""

from __future__ import annotations

import difflib
import json
import math
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from augledger._canonical import UNHASHED_FIELDS, fingerprint_of
from augledger.documents import check_document, load_document, load_text
from augledger.errors import SpecError

__all__ = [
    "SPLITS",
    "UNHASHED_FIELDS",
    "OpSpec",
    "PipelineSpec",
    "PolicySpec",
    "diff_resolved",
    "fingerprint_of",
    "format_location",
    "load_document",
    "load_spec",
    "loads_spec",
    "parse_spec",
    "validate_model",
]

#: The splits a pipeline can be used on. Only ``train`` is augmented unless the spec lists others.
SPLITS = ("train", "val", "test", "predict")
Split = Literal["train", "val", "test", "predict"]



_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpSpec(_Strict):
    """One op: a registered name, its probability and its params (JSON values only).

    ``p`` may be omitted; compiling fills in the backend's default and records it in the resolved
    spec, so the fingerprint always covers the probability actually used. Compositions (``OneOf``,
    ``SomeOf``, ``Sequential``) take their children in ``ops``.
    """

    op: str = Field(min_length=1)
    p: float | None = Field(default=None, ge=0.0, le=1.0, strict=True)
    params: dict[str, Any] = Field(default_factory=dict)
    ops: tuple[OpSpec, ...] | None = None


#: ``OP.PARAM`` in a policy's ``bounds`` (``Affine.rotate``, ``albumentations.Affine.rotate``).
_BOUND_KEY = r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)*[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"


class PolicySpec(_Strict):
    """An intensity policy (checked by :mod:`augledger.policy`): forbidden and required ops, param bounds,
    limits. A policy file starts with ``policy: 1``; under ``policy:`` in a spec the version may be left out."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    policy_version: Literal[1] = Field(default=1, alias="policy")
    name: str = Field(min_length=1)
    description: str = ""
    #: Ops that may not appear anywhere in the pipeline (bare ``HorizontalFlip`` or namespaced).
    forbid: tuple[str, ...] = ()
    #: Ops that must appear somewhere in the pipeline.
    require: tuple[str, ...] = ()
    #: ``OP.PARAM: [low, high]``: every number the param allows (a range's ends, a scalar) and every
    #: value drawn for it while running must lie inside.
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    max_ops_per_sample: int | None = Field(default=None, ge=1, strict=True)
    #: The splits a pipeline under this policy may augment (``None``: any).
    splits: tuple[Split, ...] | None = None

    @field_validator("bounds", mode="before")
    @classmethod
    def _bounds_are_numbers(cls, value: Any) -> Any:
        for key, pair in (value.items() if isinstance(value, Mapping) else ()):
            if isinstance(pair, (list, tuple)) and any(isinstance(v, (bool, str)) for v in pair):
                raise ValueError(f"bounds.{key} must be two numbers [low, high]; got {pair!r}")
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds_are_ranges(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for key, (low, high) in value.items():
            if not re.match(_BOUND_KEY, key):
                raise ValueError(f"bounds key {key!r} must be OP.PARAM, e.g. 'Affine.rotate'")
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ValueError(f"bounds.{key} must be [low, high] with finite low <= high; got [{low}, {high}]")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain JSON data, as a policy file writes it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class PipelineSpec(_Strict):
    """A whole pipeline: schema version, identity, seed, targets, allowed splits and ops."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(alias="schema")
    #: How per-sample seeds are derived (:mod:`augledger.seeding`); part of the fingerprint.
    seeding: Literal["v1"] = "v1"
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 0
    #: Which op backend resolves and runs the ops (:mod:`augledger.ops.registry`); checked at compile time.
    modality: str = Field(default="image", pattern=r"^[a-z][a-z0-9_]*$")
    splits: tuple[Split, ...] = ("train",)
    #: What travels with the sample; its shape belongs to the modality's backend, which validates it.
    targets: dict[str, Any] = Field(default_factory=dict)
    ops: tuple[OpSpec, ...] = Field(min_length=1)
    #: An intensity policy the pipeline must keep (:mod:`augledger.policy`). Not part of the
    #: fingerprint: it constrains the augmentation and never changes an output.
    policy: PolicySpec | None = None

    @field_validator("splits")
    @classmethod
    def _train_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"splits must not repeat a split; got {list(value)!r}")
        return tuple(s for s in SPLITS if s in value)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data, in the shape it is written (``schema`` key, not the alias)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def format_location(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """Render a pydantic-style location as ``ops[1].params.rotate``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside a field annotation (``X``, ``X | None``, ``tuple[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model whose field list applies at ``loc`` below ``root`` (for "did you mean" suggestions)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        inner = _submodel(field.annotation) if field is not None else None
        if inner is None:
            break
        model = inner
    return model


def validate_model(
    model: type[_M], data: Any, *, what: str = "spec", source: str = "", location: tuple[int | str, ...] = ()
) -> _M:
    """Validate ``data`` against a strict model; a failure becomes one :class:`SpecError` listing every problem.

    Each line names its location in the spec (``location`` is prepended, e.g. ``("targets",)`` for a
    backend's section), what was wrong and, for an unknown key, the closest allowed one.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, model, what=what, source=source, prefix=location) from None


def _spec_error(
    exc: ValidationError, root: type[BaseModel], *, what: str, source: str, prefix: tuple[int | str, ...]
) -> SpecError:
    lines = []
    first_loc = ""
    errors = exc.errors()
    deeper = [tuple(e["loc"]) for e in errors]
    for err in errors:
        loc = tuple(err["loc"])
        # pydantic adds a "too short" error on a tuple whose items failed; the item errors say it all.
        if err["type"] == "too_short" and any(len(d) > len(loc) and d[: len(loc)] == loc for d in deeper):
            continue
        where = format_location((*prefix, *loc)) or "<root>"
        first_loc = first_loc or where
        if err["type"] == "extra_forbidden":
            field = str(loc[-1])
            model = _model_at(root, loc[:-1])
            allowed = _field_names(model)
            close = difflib.get_close_matches(field, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            if model is OpSpec and not close:
                value = json.dumps(err.get("input"), default=str)
                hint = (f"an op takes {', '.join(allowed)}; if {field!r} is a param of the op, write it under "
                        f"params: {{params: {{{field}: {value}}}}}")
            lines.append(f"{where}: unknown key; {hint}")
        elif err["type"] == "missing":
            lines.append(f"{where}: required key is missing; add it (see `augledger spec schema`)")
        elif err["type"] == "value_error":  # our own validators' messages name the value already
            lines.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        else:
            lines.append(f"{where}: {err['msg']}; got {err.get('input')!r}")
    head = f"invalid {what}{f' {source}' if source else ''}"
    return _located(SpecError(head + ":\n  " + "\n  ".join(lines)), first_loc)


def _located(error: SpecError, location: str) -> SpecError:
    # Each line of the message names its own location: set it on the error without prefixing the text.
    error.location = location
    return error


def parse_spec(data: Mapping[str, Any], *, source: str = "") -> PipelineSpec:
    """Validate a spec given as plain data (e.g. the result of ``yaml.safe_load``).

    Raises:
        SpecError: with one line per problem, each naming its location.
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            f"a spec must be a mapping with keys schema, name, ops, ...; got {type(data).__name__}"
            f"{f' in {source}' if source else ''}"
        )
    check_document(data, source)
    return validate_model(PipelineSpec, dict(data), source=source)


def load_spec(path: str | Path, /) -> PipelineSpec:
    """Load and validate a spec file (``.yaml``, ``.yml`` or ``.json``).

    For YAML or JSON text in a string, use :func:`loads_spec`.

    Raises:
        SpecError: the file is missing, unsafe, malformed or does not validate.
    """
    if "\n" in str(path):
        raise SpecError("load_spec takes a file path; this looks like spec text: use augledger.loads_spec(text)")
    return parse_spec(load_document(path), source=str(path))


def loads_spec(text: str, /, *, format: Literal["yaml", "json"] = "yaml", source: str = "") -> PipelineSpec:
    """Parse and validate a spec from YAML (the default; JSON is YAML too) or strict JSON text.

    Raises:
        SpecError: the text is unsafe, malformed or does not validate.
    """
    if format not in ("yaml", "json"):
        raise SpecError(f"format must be 'yaml' or 'json'; got {format!r}")
    return parse_spec(load_text(text, source=source, as_json=format == "json"), source=source)


_MISSING = object()


def diff_resolved(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Param-level differences between two resolved specs: ``[(location, a_value, b_value), ...]``.

    Locations use the spec's own notation (``ops[1].params.rotate``); a value absent on one side is
    reported as ``None`` in the location's tuple slot and listed in order of the document.
    """
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Any, y: Any, loc: tuple[int | str, ...]) -> None:
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, _MISSING), y.get(k, _MISSING), (*loc, k))
        elif isinstance(x, list) and isinstance(y, list) and loc and loc[-1] in ("ops",):
            for i in range(max(len(x), len(y))):
                walk(x[i] if i < len(x) else _MISSING, y[i] if i < len(y) else _MISSING, (*loc, i))
        elif x != y or type(x) is not type(y):
            out.append((format_location(loc), None if x is _MISSING else x, None if y is _MISSING else y))

    walk(a, b, ())
    return out
