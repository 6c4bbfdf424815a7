"""Adopting an existing Albumentations pipeline: a ``Compose`` (or its ``A.to_dict`` / ``A.save`` data) as a spec.

Each transform becomes an op by class name with its params and ``p``; ``OneOf``, ``SomeOf``,
``Sequential``, ... keep their children under ``ops`` (a nested ``Compose`` becomes a
``Sequential``); ``bbox_params`` / ``keypoint_params`` become ``targets``. Nothing is imported or
called by name: a class name is only looked up in the allowlist when the spec is compiled, and
this module only checks it here to name the path of a refused or unknown op (``transforms[2]``).
Deprecated names (``ShiftScaleRotate``) are kept as written; compiling resolves them
(:mod:`~augledger.ops.image.aliases`).

The spec's outputs equal the ``Compose``'s when both are given the same generators (the Compose's
``set_random_state`` with :func:`augledger.seeding.generators_for` of the sample seed), because the
pipeline is built from the same transforms in the same tree, and both draw the Compose's own
``p`` check first. Except for a ``Compose`` with ``p < 1``: a spec has no top-level ``p``, so it
becomes a ``Sequential(p)`` around every op, which applies with the same probability but draws
once more (the spec's own Compose draws its check at ``p = 1``); the outputs then differ draw for
draw, and :func:`from_albumentations` warns.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from augledger.errors import SpecError, UnknownOpError
from augledger.ops.image.aliases import DEPRECATED_ALIASES
from augledger.ops.image.allowlist import COMPOSITIONS, IMAGE_OPS, NAMESPACE, REFUSED
from augledger.ops.image.library import albumentations
from augledger.spec import PipelineSpec, parse_spec

__all__ = ["from_albumentations"]

_CLASS = "__class_fullname__"
_TOP = ("Compose", "ReplayCompose")
_BBOX_KEYS = ("format", "label_fields", "min_area", "min_visibility", "min_width", "min_height", "clip",
              "filter_invalid_bboxes", "check_each_transform", "max_accept_ratio")
_KEYPOINT_KEYS = ("format", "label_fields", "remove_invisible", "angle_in_degrees", "check_each_transform")


def from_albumentations(
    compose: Any, *, name: str = "imported", seed: int = 0, mask: bool = False, description: str | None = None
) -> PipelineSpec:
    """A spec for an Albumentations pipeline: an ``A.Compose``, or the dict ``A.to_dict`` returns / ``A.save`` writes.

    Args:
        compose: the pipeline (``A.Compose``), or its serialized dict (with or without the
            ``{"__version__", "transform"}`` envelope).
        name: the spec's name.
        seed: the spec's seed.
        mask: declare a mask target (a ``Compose`` does not record whether it is given masks).
        description: the spec's description (default: where it came from).

    Raises:
        UnknownOpError: a transform a spec may not name (``Lambda``, a custom class), naming it and
            its path (``transforms[2]``), with the reason.
        SpecError: anything else a spec cannot say (additional targets, a malformed dict).

    Example:
        >>> import albumentations as A  # doctest: +SKIP
        >>> spec = from_albumentations(A.Compose([A.HorizontalFlip()]), name="flip")  # doctest: +SKIP
    """
    data, version = _as_dict(compose)
    if _class_name(data, "transform") not in _TOP:
        raise SpecError(f"an Albumentations pipeline is a Compose at the top; got {data.get(_CLASS)!r}",
                        location="transform")
    targets: dict[str, Any] = {"mask": True} if mask else {}
    if data.get("additional_targets"):
        raise SpecError(
            f"additional_targets {sorted(data['additional_targets'])!r} are not supported: an augledger sample has "
            "one image (and its mask, boxes, keypoints); split them into separate samples",
            location="transform.additional_targets",
        )
    for kind, key, keys in (("bboxes", "bbox_params", _BBOX_KEYS), ("keypoints", "keypoint_params", _KEYPOINT_KEYS)):
        params = data.get(key)
        if params:
            targets[kind] = {k: v for k, v in dict(params).items() if k in keys}
    ops = [_op(child, f"transforms[{i}]") for i, child in enumerate(_children(data, "transform"))]
    p = float(data.get("p", 1.0))
    if p < 1.0:  # a spec has no top-level p: the same probability on one Sequential around every op
        ops = [{"op": "Sequential", "p": p, "ops": ops}]
        warnings.warn(f"the Compose has p={p:g}; the spec applies its ops with the same probability (a Sequential with "
                      "that p around them) but draws once more, so its outputs equal the Compose's in distribution, "
                      "not draw for draw", UserWarning, stacklevel=2)
    document = {
        "schema": 1,
        "name": name,
        "description": description if description is not None else f"imported from an Albumentations {version} Compose",
        "seed": seed,
        "modality": "image",
        "targets": targets,
        "ops": ops,
    }
    return parse_spec(document, source="from_albumentations")


def _as_dict(compose: Any) -> tuple[dict[str, Any], str]:
    if isinstance(compose, Mapping):
        if "transform" in compose and _CLASS not in compose:
            return dict(compose["transform"]), str(compose.get("__version__", "(unknown version)"))
        return dict(compose), "(unknown version)"
    A = albumentations()
    if not isinstance(compose, A.BaseCompose):
        raise SpecError(
            f"from_albumentations takes an A.Compose or its A.to_dict() dict; got {type(compose).__name__}"
        )
    return _object_to_dict(A, compose, "transform"), str(A.__version__)


def _object_to_dict(A: Any, transform: Any, path: str) -> dict[str, Any]:
    """The ``A.to_dict`` form, one node at a time, so a transform that cannot be serialized
    (``Lambda``) is named by its path instead of failing the whole conversion."""
    cls_name = type(transform).__name__
    if not isinstance(transform, A.BaseCompose):
        _check_known(cls_name, path)
        return {**transform.to_dict_private(), _CLASS: cls_name}
    node: dict[str, Any] = {_CLASS: cls_name, "p": transform.p}
    for attr in ("n", "replace", "channels", "additional_targets"):
        if hasattr(transform, attr):
            node[attr] = getattr(transform, attr)
    processors = getattr(transform, "processors", {})
    for kind, key in (("bboxes", "bbox_params"), ("keypoints", "keypoint_params")):
        if kind in processors:
            node[key] = processors[kind].params.to_dict_private()
    prefix = "" if path == "transform" else f"{path}."
    node["transforms"] = [_object_to_dict(A, t, f"{prefix}transforms[{i}]") for i, t in enumerate(transform.transforms)]
    return node


def _class_name(node: Mapping[str, Any], path: str) -> str:
    name = node.get(_CLASS)
    if not isinstance(name, str) or not name:
        raise SpecError(f"each transform needs a {_CLASS!r} naming its class (as A.to_dict writes); got {name!r}",
                        location=path)
    # Albumentations 1.x wrote import paths (albumentations.augmentations.transforms.Blur): the class
    # name is the last part. Anything outside Albumentations is not an allowed op.
    if name.startswith(f"{NAMESPACE}."):
        return name.rsplit(".", 1)[-1]
    return name


def _check_known(name: str, path: str) -> None:
    if name in IMAGE_OPS or name in COMPOSITIONS or name in DEPRECATED_ALIASES or name in _TOP:
        return
    if name in REFUSED:
        raise UnknownOpError(f"{name} cannot be adopted into a spec: {REFUSED[name]}; remove it from the pipeline "
                             "(or do that step outside the augmentation spec)", location=path)
    raise UnknownOpError(
        f"{name} is not an Albumentations 2.0.8 transform a spec may name (a custom class, or one from another "
        "version); replace it with an allowed op (`augledger ops list`) or remove it", location=path,
    )


def _children(node: Mapping[str, Any], path: str) -> Sequence[Mapping[str, Any]]:
    children = node.get("transforms")
    if not isinstance(children, list) or not all(isinstance(c, Mapping) for c in children):
        raise SpecError(f"'transforms' must be a list of transform dicts; got {type(children).__name__}",
                        location=f"{path}.transforms")
    return children


def _op(node: Mapping[str, Any], path: str) -> dict[str, Any]:
    name = _class_name(node, path)
    _check_known(name, path)
    if name in _TOP:  # a nested Compose: its targets are its parent's (A.to_dict copies them down)
        children = [_op(c, f"{path}.transforms[{i}]") for i, c in enumerate(_children(node, path))]
        return {"op": "Sequential", "p": float(node.get("p", 1.0)), "ops": children}
    if name in COMPOSITIONS:
        params = {k: v for k, v in node.items() if k in COMPOSITIONS[name]}
        children = [_op(c, f"{path}.transforms[{i}]") for i, c in enumerate(_children(node, path))]
        return {"op": name, "p": float(node.get("p", 1.0)), "params": params, "ops": children}
    # A.to_dict writes some derived attributes beside the init args (PadIfNeeded's ``padding``);
    # A.load ignores them (a warning), and so does this: the spec holds what the constructor takes.
    known = inspect.signature(getattr(albumentations(), name)).parameters
    params = {k: v for k, v in node.items() if k in known and k not in ("self", "p", "strict", "always_apply")}
    op: dict[str, Any] = {"op": name, "params": params}
    if "p" in node:
        op["p"] = float(node["p"])
    return op
