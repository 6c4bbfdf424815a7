"""Deprecated Albumentations names that specs still use, resolved to their modern equivalent.

Tutorials and old configs name ``ShiftScaleRotate``; in Albumentations 2.0.8 it is a subclass of
``Affine`` that only maps its arguments and warns. A spec naming it resolves to the ``Affine`` it
builds, with the mapping Albumentations itself makes (read from 2.0.8's
``augmentations/geometric/transforms.py``):

* ``shift_limit`` (or ``shift_limit_x`` / ``shift_limit_y``), symmetric -> ``translate_percent``
  ``{"x": [lo, hi], "y": [lo, hi]}``
* ``scale_limit``, symmetric and biased by 1 -> ``scale`` ``[1 + lo, 1 + hi]``
* ``rotate_limit``, symmetric -> ``rotate`` ``[lo, hi]``; ``shear`` ``[0, 0]``
* ``interpolation``, ``mask_interpolation``, ``border_mode``, ``fill``, ``fill_mask``,
  ``rotate_method`` unchanged; ``fit_output`` and ``keep_ratio`` false.

So ``{op: ShiftScaleRotate}`` and the ``Affine`` it stands for have one resolved form and one
fingerprint, the resolved spec names ``albumentations.Affine``, and the outputs equal the
deprecated class's given the same generators. ``TimeReverse`` is ``HorizontalFlip``. The alias's
own schema validates its params first, so an error names the params the spec wrote.

``TimeMasking`` and ``FrequencyMasking`` stay refused (``allowlist.REFUSED``): they hand
``XYMasking`` an int mask count past its schema, which draws nothing, while every validated
``XYMasking`` holds a range and draws from it, so no resolved form reproduces their outputs.
"""

from __future__ import annotations

import difflib
import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from augledger.errors import ParamError
from augledger.ops.image.allowlist import NAMESPACE
from augledger.spec import OpSpec

__all__ = ["DEPRECATED_ALIASES", "translate_alias"]


def _pair(value: Any) -> list[float]:
    low, high = value
    return [float(low), float(high)]


def _shift_scale_rotate(t: Any) -> dict[str, Any]:
    return {
        "scale": _pair(t.scale_limit),  # the schema has already biased it by 1
        "translate_percent": {"x": _pair(t.shift_limit_x), "y": _pair(t.shift_limit_y)},
        "rotate": _pair(t.rotate_limit),
        "shear": [0.0, 0.0],
        "interpolation": t.interpolation,
        "mask_interpolation": t.mask_interpolation,
        "border_mode": t.border_mode,
        "fill": t.fill,
        "fill_mask": t.fill_mask,
        "fit_output": False,
        "keep_ratio": False,
        "rotate_method": t.rotate_method,
    }


#: Deprecated name -> (modern op, the modern params of a validated instance of the deprecated class).
DEPRECATED_ALIASES: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "ShiftScaleRotate": ("Affine", _shift_scale_rotate),
    "TimeReverse": ("HorizontalFlip", lambda t: {}),
}

# The one warning each alias gives on construction ("... is a special case of Affine", "... is an
# alias for HorizontalFlip"); any other is an error.
_ALIAS_WARNING = re.compile(r".*(special case of|is an alias for)")
_PYDANTIC_MESSAGE = re.compile(r"^\s+(?:Value error, )?(.+?) \[type=", re.MULTILINE)


def translate_alias(A: Any, op: OpSpec, location: str) -> OpSpec:
    """``op`` itself, or, for a deprecated name, the modern op it builds (same ``p``, mapped params).

    Raises:
        ParamError: the alias's params are unknown, reversed or rejected by its own schema
            (naming ``ops[i].params.FIELD``).
    """
    bare = op.op.removeprefix(f"{NAMESPACE}.")
    if bare not in DEPRECATED_ALIASES:
        return op
    modern, mapping = DEPRECATED_ALIASES[bare]
    cls = getattr(A, bare)
    signature = inspect.signature(cls).parameters
    known = [k for k in signature if k not in ("self", "p", "strict", "always_apply")]
    for field, value in op.params.items():
        if field not in known:
            close = difflib.get_close_matches(field, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"accepted params: {', '.join(known) or '(none)'}"
            raise ParamError(f"unknown param for {bare} (deprecated alias of {modern}); {hint}",
                             location=f"{location}.params.{field}")
        _check_given(value, bare, f"{location}.params.{field}")
    if op.ops is not None:
        raise ParamError(f"{bare} is a transform, not a composition; remove 'ops'", location=f"{location}.ops")
    p = op.p if op.p is not None else float(signature["p"].default)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=_ALIAS_WARNING.pattern, category=UserWarning)
        try:
            instance = cls(p=p, strict=True, **op.params)
        except (ValueError, TypeError, UserWarning) as exc:
            # Albumentations re-raises pydantic's report as text: keep its messages, not its boilerplate.
            detail = "; ".join(_PYDANTIC_MESSAGE.findall(str(exc))) or str(exc)
            raise ParamError(f"{bare} (deprecated alias of {modern}) rejected its params: {detail}; "
                             f"got {dict(op.params)!r}", location=f"{location}.params") from None
    return OpSpec(op=f"{NAMESPACE}.{modern}", p=p, params=mapping(instance))


def _check_given(value: Any, bare: str, location: str) -> None:
    """Params as written: numbers are numbers (no ``true``, no ``"0.1"``), ranges are ``[low, high]``."""
    if isinstance(value, Mapping):
        raise ParamError(f"{bare} takes a number or [low, high] here; got {value!r}", location=location)
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(_is_number(v) for v in value) and value[0] > value[1]:
            raise ParamError(
                f"a range must be [low, high] with low <= high; got {list(value)!r}. "
                f"Swap the bounds: [{value[1]!r}, {value[0]!r}]",
                location=location,
            )
        for i, item in enumerate(value):
            _check_given(item, bare, f"{location}[{i}]")
    elif isinstance(value, (bool, str)) and not location.endswith("rotate_method"):
        raise ParamError(f"{bare}: a number is expected; got {value!r} ({type(value).__name__}); "
                         'write the value itself, e.g. 0.1 not "0.1", 1 not true', location=location)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
