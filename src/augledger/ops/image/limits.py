"""Hard limits on resolved image params, whatever a policy allows (checked by :mod:`~augledger.ops.image.resolve`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from augledger.errors import ParamError

__all__ = ["check_limits"]


#: Hard limits on params, whatever a policy allows. Albumentations accepts values far beyond any
#: meaning (``rotate: 1e308``, ``blur_limit: [3, 1e9]``, ``height: 100000``); at run time they hang
#: (a billion-pixel kernel), allocate tens of GB per sample, or compute with meaningless floats.
#: ``(op or "*", param) -> (low, high, what the value is)``; every number in the resolved value counts.
_LIMITS: dict[tuple[str, str], tuple[float, float, str]] = {
    ("Affine", "rotate"): (-360.0, 360.0, "an angle in degrees"),
    ("Affine", "shear"): (-360.0, 360.0, "an angle in degrees"),
    ("Rotate", "limit"): (-360.0, 360.0, "an angle in degrees"),
    ("SafeRotate", "limit"): (-360.0, 360.0, "an angle in degrees"),
    ("Affine", "scale"): (0.01, 100.0, "a scale factor"),
    ("Affine", "translate_px"): (-16384, 16384, "a shift in pixels"),
    ("GlassBlur", "iterations"): (1, 100, "a number of passes"),
    ("*", "blur_limit"): (0, 255, "a kernel size in pixels"),
    ("*", "sigma_limit"): (0, 255, "a blur sigma in pixels"),
    **{("*", name): (1, 16384, "an image side in pixels")
       for name in ("height", "width", "size", "min_height", "min_width", "max_size", "max_size_hw")},
}
#: Any other number in any param: no image op has a use for a larger magnitude.
_MAX_MAGNITUDE = 1e6


def check_limits(bare: str, resolved: Mapping[str, Any], location: str) -> None:
    """Refuse a resolved param of op ``bare`` outside its hard limit.

    Raises:
        ParamError: naming ``{location}.params.FIELD``, the value, what it is and the limit.
    """
    for field, value in resolved.items():
        low, high, what = _LIMITS.get((bare, field)) or _LIMITS.get(("*", field)) or (
            -_MAX_MAGNITUDE, _MAX_MAGNITUDE, "a number")
        for number in _numbers(value):
            if not low <= number <= high:
                raise ParamError(
                    f"{number!r} is outside what {bare} can use: {field} is {what}, within [{low:g}, {high:g}]",
                    location=f"{location}.params.{field}",
                )


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [value]
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    return [n for item in items for n in _numbers(item)]
