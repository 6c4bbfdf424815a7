"""The pipeline card: the Markdown document a review reads before a pipeline version is approved.

A card says, in words, what the pipeline does to a sample (every op with its node path, its
probability and its params), which splits it may touch, who added it and how its lifecycle went
(from a registry's governance record, when there is one), the environment under which its outputs
are byte-identical, and ends with the resolved spec that the fingerprint covers.

The card is a pure function of the pipeline, the governance mapping and the environment: it reads
no clock, so the same inputs give the same bytes. Text that users wrote (description, notes,
reasons, names) is escaped so that it can neither break a table nor inject HTML.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from augledger.env import EnvStamp
from augledger.io.image import encode_image, read_image_file
from augledger.pipeline import Pipeline
from augledger.report.grid import preview_grid
from augledger.spec import SPLITS

__all__ = ["OP_DESCRIPTIONS", "render_card", "write_card"]

log = logging.getLogger(__name__)

_NAMESPACE = "albumentations."

#: What each image op does, in a sentence (keyed by bare Albumentations name). Ops not listed get
#: "applies <op>"; compositions get a sentence built from their params and children.
OP_DESCRIPTIONS: dict[str, str] = {
    "AdditiveNoise": "adds random noise (uniform, Gaussian, Laplace or beta) to the pixels",
    "AdvancedBlur": "blurs with a randomly shaped, rotated and noisy generalized Gaussian kernel",
    "Affine": "warps the image with one affine transform: rotation, scaling, shear and translation",
    "AtLeastOneBBoxRandomCrop": "crops a random window that contains at least one bounding box",
    "AutoContrast": "stretches each channel's intensities to the full range", "BBoxSafeRandomCrop": "crops a random window that keeps every bounding box",
    "Blur": "blurs with a box filter of random size", "CLAHE": "equalizes local contrast (contrast-limited adaptive histogram equalization)",
    "CenterCrop": "crops the centre of the image to a fixed size", "ChannelDropout": "fills randomly chosen colour channels with a constant",
    "ChannelShuffle": "shuffles the order of the colour channels",
    "ChromaticAberration": "shifts the red and blue channels radially, as a lens with chromatic aberration does",
    "CoarseDropout": "cuts rectangular holes out of the image and fills them", "ColorJitter": "changes brightness, contrast, saturation and hue by random amounts",
    "ConstrainedCoarseDropout": "cuts holes inside the regions of chosen mask classes or box labels", "Crop": "crops a fixed rectangle",
    "CropAndPad": "crops or pads each side of the image by a random amount",
    "CropNonEmptyMaskIfExists": "crops a fixed-size window that contains mask objects when there are any",
    "D4": "applies one of the 8 symmetries of the square (quarter turns and flips)", "Defocus": "simulates an out-of-focus lens with a disc blur",
    "Downscale": "lowers the resolution by downscaling and upscaling back", "ElasticTransform": "deforms the image with a smooth random displacement field",
    "Emboss": "embosses the image and blends the result with the original", "Equalize": "equalizes the image histogram",
    "Erasing": "erases one random rectangle (random erasing)", "FancyPCA": "shifts colours along their principal components (PCA lighting noise)",
    "FromFloat": "converts a float image back to integers", "GaussNoise": "adds Gaussian noise",
    "GaussianBlur": "blurs with a Gaussian kernel of random size and sigma", "GlassBlur": "simulates frosted glass by blurring and locally shuffling pixels",
    "GridDistortion": "distorts the image along a grid of randomly sized cells", "GridDropout": "drops out cells of a regular grid",
    "GridElasticDeform": "deforms the image elastically on a coarse grid", "HEStain": "varies haematoxylin and eosin staining (histology)",
    "HorizontalFlip": "flips the image left to right", "HueSaturationValue": "shifts hue, saturation and value by random amounts",
    "ISONoise": "adds camera sensor noise (colour shift and intensity noise)", "Illumination": "adds a linear, corner or Gaussian illumination pattern",
    "ImageCompression": "re-encodes the image with lossy compression and decodes it again", "InvertImg": "inverts the pixel values (a negative)",
    "LongestMaxSize": "resizes so that the longest side has a given size, keeping the aspect ratio",
    "MaskDropout": "removes random mask objects and fills their pixels in the image", "MedianBlur": "blurs with a median filter of random size",
    "Morphological": "dilates or erodes the image", "MotionBlur": "blurs along a random line, as camera motion does",
    "MultiplicativeNoise": "multiplies the pixels by random factors", "NoOp": "does nothing (a placeholder)",
    "Normalize": "normalizes pixel values (subtracts a mean, divides by a standard deviation); the output is float",
    "OpticalDistortion": "applies barrel or pincushion lens distortion", "Pad": "pads the sides of the image",
    "PadIfNeeded": "pads the image up to a minimum size or a multiple of a divisor", "Perspective": "applies a random perspective transform",
    "PixelDropout": "sets random single pixels to a constant", "PlanckianJitter": "changes the white balance along the black-body (Planckian) locus",
    "PlasmaBrightnessContrast": "changes brightness and contrast with a fractal plasma pattern", "PlasmaShadow": "darkens the image with a fractal plasma shadow",
    "Posterize": "reduces the number of bits per colour channel", "RGBShift": "shifts each of the red, green and blue channels by a random amount",
    "RandomBrightnessContrast": "changes brightness and contrast by random amounts", "RandomCrop": "crops a random window of fixed size",
    "RandomCropFromBorders": "crops a random amount from each border", "RandomFog": "adds fog", "RandomGamma": "applies a random gamma correction",
    "RandomGravel": "adds gravel particles", "RandomGridShuffle": "cuts the image into a grid and shuffles the cells", "RandomRain": "adds rain streaks",
    "RandomResizedCrop": "crops a random area and aspect ratio, then resizes it to a fixed size", "RandomRotate90": "rotates by a random multiple of 90 degrees",
    "RandomScale": "rescales the image by a random factor", "RandomShadow": "adds polygonal shadows",
    "RandomSizedBBoxSafeCrop": "crops a random window that keeps every bounding box, then resizes it",
    "RandomSizedCrop": "crops a window of random height, then resizes it to a fixed size", "RandomSnow": "adds snow by brightening parts of the image",
    "RandomSunFlare": "adds a sun flare", "RandomToneCurve": "changes the tone curve (shadows and highlights)", "Resize": "resizes to a fixed height and width",
    "RingingOvershoot": "adds ringing artefacts with a sinc filter", "Rotate": "rotates by a random angle",
    "SafeRotate": "rotates by a random angle without cutting off the content", "SaltAndPepper": "sets random pixels to white (salt) or black (pepper)",
    "Sharpen": "sharpens the image and blends the result with the original", "ShotNoise": "adds photon shot (Poisson) noise",
    "SmallestMaxSize": "resizes so that the shortest side has a given size, keeping the aspect ratio", "Solarize": "inverts the pixels above a threshold",
    "Spatter": "adds rain or mud spatter", "SquareSymmetry": "applies one of the 8 symmetries of the square (quarter turns and flips)",
    "Superpixels": "replaces some superpixels with their mean colour", "ThinPlateSpline": "warps the image smoothly with a thin-plate spline",
    "ToFloat": "converts the image to float by dividing by its maximum value", "ToGray": "converts the image to greyscale", "ToSepia": "applies a sepia filter",
    "Transpose": "swaps rows and columns (transposes the image)", "UnsharpMask": "sharpens with an unsharp mask", "VerticalFlip": "flips the image upside down",
    "XYMasking": "masks random horizontal and vertical stripes", "ZoomBlur": "blurs radially, as zooming during the exposure does",
    "OneOf": "applies one of its child ops, picked by weight", "OneOrOther": "applies either its first or its second child op",
    "RandomOrder": "applies some of its child ops in a random order", "SelectiveChannelTransform": "applies its child ops to chosen channels only",
    "SomeOf": "applies some of its child ops, picked at random", "Sequential": "applies its child ops in order",
}  # fmt: skip

# Units of ranges and numbers, by "Op.param" or by param name; only where the unit is certain.
_UNITS = {
    "Affine.rotate": "degrees", "Affine.shear": "degrees", "Affine.translate_px": "pixels", "Rotate.limit": "degrees",
    "Affine.translate_percent": "(fraction of the image size)", "SafeRotate.limit": "degrees", "AdvancedBlur.rotate_limit": "degrees",
    "MotionBlur.angle_range": "degrees", "Illumination.angle_range": "degrees", "PlanckianJitter.temperature_limit": "kelvin",
    "ImageCompression.quality_range": "(quality, 1 to 100)", "blur_limit": "pixels (kernel size)",
}  # fmt: skip
# Two-number params that are a size or a grid, not a range.
_PAIRS = frozenset({"size", "tile_grid_size", "grid", "num_grid_xy", "shift_xy"})
# OpenCV constants that specs store as integers.
_INTERPOLATION = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "lanczos4", 5: "linear exact", 6: "nearest exact"}
_ENUMS: dict[str, dict[int, str]] = {
    "border_mode": {0: "constant", 1: "replicate", 2: "reflect", 3: "wrap", 4: "reflect 101"}, "interpolation": _INTERPOLATION,
    "mask_interpolation": _INTERPOLATION, "upscale": _INTERPOLATION, "downscale": _INTERPOLATION,
}  # fmt: skip
_STATES = {"draft": "draft: not yet approved", "approved": "approved: cleared for use", "retired": "retired: refused for new runs",
           "deprecated": "deprecated: still resolves, with a warning; move to a newer version"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _text(value: Any) -> str:
    """User text made safe for a table cell or a line: one line, no HTML, no Markdown markup."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(value: Any) -> str:
    """``value`` as an inline code span that no backtick, newline or ``|`` inside it can break."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else format(value, ".6g")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value(key: str, value: Any, unit: str) -> str:
    """A param value in words: ranges, sizes, switches, names and nested values."""
    suffix = f" {unit}" if unit else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "not set"
    if _is_number(value):
        named = _ENUMS.get(key, {}).get(value) if isinstance(value, int) else None
        return f"{_number(value)} ({named})" if named else f"{_number(value)}{suffix}"
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        low, high = value
        if key in _PAIRS:
            return f"{_number(low)} x {_number(high)}{suffix}"
        return f"exactly {_number(low)}{suffix}" if low == high else f"between {_number(low)} and {_number(high)}{suffix}"
    if isinstance(value, list):
        return ", ".join(_value(key, v, unit) for v in value) if value else "none"
    if isinstance(value, dict):
        if set(value) == {"x", "y"} and value["x"] == value["y"]:
            return f"{_value(key, value['x'], unit)} on both axes"
        parts = [f"{_text(str(k).replace('_', ' '))} {_value(str(k), v, unit)}" for k, v in value.items()]
        return ", ".join(parts) if parts else "none"
    return _code(value)


def _chance(p: float) -> str:
    """A probability in words: ``always``, ``never``, ``half the time``, ``with probability 0.3``."""
    words = {1.0: "always", 0.0: "never", 0.5: "half the time"}
    return words.get(min(max(p, 0.0), 1.0), f"with probability {_number(p)}")


def _p(op: Mapping[str, Any]) -> float:
    return float(op["p"]) if _is_number(op.get("p")) else 1.0


def _bare(name: str) -> str:
    return name.removeprefix(_NAMESPACE) if name.startswith(_NAMESPACE) or "." not in name else name


def _what(op: Mapping[str, Any]) -> str:
    """The sentence saying what one op does; compositions say how they pick their children."""
    name, params = _bare(str(op.get("op", "?"))), op.get("params") or {}
    k, p = len(op.get("ops") or []), _p(op)
    n, with_replace = params.get("n", 1), "with" if params.get("replace") else "without"
    composed = {
        "OneOf": f"picks one of its {k} child ops by weight and always applies it",
        "OneOrOther": f"applies its first child op with probability {_number(p)}, otherwise its second (exactly one of the two)",
        "SomeOf": f"picks {n} of its {k} child ops uniformly at random ({with_replace} replacement) and applies each with its own probability, in list order",
        "RandomOrder": f"picks {n} of its {k} child ops uniformly at random ({with_replace} replacement) and applies each with its own probability, in a random order",
        "Sequential": f"applies its {k} child ops in order, each with its own probability",
        "SelectiveChannelTransform": f"applies its {k} child ops to channels {_value('channels', params.get('channels'), '')} only, each with its own probability",
    }
    if name in composed and "ops" in op:
        return composed[name]
    return OP_DESCRIPTIONS.get(name, f"applies {_text(name)}")


def _walk(ops: Sequence[Mapping[str, Any]], prefix: str, parent: Mapping[str, Any] | None) -> list[str]:
    """One bullet per op, depth first, labelled by node path, with its params as sub-bullets."""
    lines: list[str] = []
    parent_name = _bare(str(parent.get("op", ""))) if parent is not None else ""
    weights = [_p(child) for child in ops]
    for i, op in enumerate(ops):
        path = f"{prefix}[{i}]"
        name, p = _bare(str(op.get("op", "?"))), _p(op)
        base = "always" if name == "OneOrOther" and "ops" in op else _chance(p)
        if parent_name == "OneOrOther" and parent is not None:
            branch = _p(parent)
            when = f"taken with probability {_number(branch)}" if i == 0 else f"taken otherwise (probability {_number(1 - branch)})"
            chance = f"{when}, then always applied"
        elif parent_name == "OneOf":
            share = f"{p / sum(weights):.0%}" if sum(weights) > 0 else "0%"
            chance = f"picked with weight {_number(p)} ({share} of picks), then always applied"
        elif parent_name in ("SomeOf", "RandomOrder"):
            chance = f"when picked, {base}"
        else:
            chance = base
        inside = f" (inside {_code(prefix.rsplit('.', 1)[0])} {_text(parent_name)})" if parent is not None else ""
        lines.append(f"- {_code(path)} **{_text(name)}**{inside}, {chance}: {_what(op)}.")
        params: Mapping[str, Any] = op.get("params") or {}
        lines += [f"  - {_code(k)}: {_value(k, params[k], _UNITS.get(f'{name}.{k}', _UNITS.get(k, '')))}" for k in sorted(params)]
        lines += [] if params else ["  - no params"]
        if op.get("ops"):
            lines += _walk(op["ops"], f"{path}.ops", op)
    return lines


def _splits(splits: Sequence[str]) -> str:
    others = [s for s in SPLITS if s not in splits]
    named = ", ".join(_text(s) for s in splits) or "none"
    if not others:
        return f"{named} (every split)"
    rest = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} and {others[-1]}"
    return f"{named}; {rest} {'is' if len(others) == 1 else 'are'} never augmented"


def _change(detail: Any) -> str:
    if not isinstance(detail, Mapping) or not detail:
        return ""
    def side(key: str) -> str:
        value = detail.get(key)
        return "(none)" if value is None else _text(f"v{value}" if isinstance(value, int) else value)
    if "alias" in detail:
        return f"alias {_code(detail['alias'])}: {side('from')} → {side('to')}"
    if "from" in detail or "to" in detail:
        return f"{side('from')} → {side('to')}"
    return ", ".join(f"{_text(k)}: {_text(v)}" for k, v in sorted(detail.items(), key=lambda kv: str(kv[0])))


def _lifecycle(governance: Mapping[str, Any] | None) -> list[str]:
    """The history table (oldest first), the aliases and the four-eyes rule, from the registry's record."""
    if governance is None:
        return ["This pipeline is not registered: there is no registry history, owner, alias or approval. "
                "Add it to a registry to give it a version and an audit trail."]
    entries = [e for e in governance.get("history") or [] if isinstance(e, Mapping)]
    entries.sort(key=lambda e: e["seq"] if isinstance(e.get("seq"), int) else float("inf"))
    lines = ["| # | when | who | action | version | change | reason |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        row = [_text(e[c]) if e.get(c) is not None else "-" for c in ("seq", "at", "actor", "action", "version")]
        row += [_change(e.get("detail")) or "-", _text(e["reason"]) if e.get("reason") else "-"]
        lines.append("| " + " | ".join(row) + " |")
    if not entries:
        lines = ["The registry holds no history for this version."]
    aliases = sorted(str(a) for a in governance.get("aliases") or [])
    lines += ["", f"Aliases pointing at this version: {', '.join(_code(a) for a in aliases)}." if aliases
              else "No alias points at this version.", ""]
    single = governance.get("single_user")
    four_eyes = {True: "The registry is single-user: four-eyes approval is off, so whoever adds a version may also approve it.",
                 False: "The registry is not single-user: four-eyes approval is on."}
    lines.append(four_eyes.get(single, "") if isinstance(single, bool) else "Whether the registry enforces four-eyes approval is not recorded.")
    return lines


def _facts(pipe: Pipeline, resolved: Mapping[str, Any], governance: Mapping[str, Any] | None) -> list[str]:
    """The facts table: identity, ownership, scope and lifecycle state."""
    gov: Mapping[str, Any] = governance or {}
    unknown = "not recorded" if governance is not None else "not registered"
    if gov.get("added_by"):
        owner = _text(gov["added_by"]) + (f" (added {_text(gov['added_at'])})" if gov.get("added_at") else "")
    else:
        owner = "not recorded" if governance is not None else "not recorded: the spec is not in a registry"
    state = gov.get("state")
    targets = [_text(k) for k, v in sorted(resolved.get("targets", {}).items()) if v]
    rows = [
        ("name", _text(pipe.name)),
        *([("registry ref", _code(gov["ref"]))] if gov.get("ref") else []),
        ("version", _text(gov["version"]) if gov.get("version") is not None else unknown),
        ("fingerprint", _code(pipe.fingerprint)),
        ("owner", owner),
        ("description", _text(resolved["description"]) if resolved.get("description") else "(none)"),
        ("modality", _text(pipe.modality)),
        ("seed", str(pipe.seed)),
        ("splits it may touch", _splits(pipe.splits)),
        ("extra targets", ", ".join(targets) or "none"),
        ("lifecycle state", _text(_STATES.get(str(state), state)) if state else unknown),
        *([("approved by", _text(gov["approved_by"]))] if gov.get("approved_by") else []),
        *([("note", _text(gov["note"]))] if gov.get("note") else []),
        *([("as of", _text(gov["as_of"]))] if gov.get("as_of") else []),
        *([("registry audit", _text(gov["audit"]))] if gov.get("audit") else []),
    ]
    return ["| field | value |", "| --- | --- |", *(f"| {field} | {value} |" for field, value in rows)]


def render_card(
    pipe: Pipeline, *, governance: Mapping[str, Any] | None = None, preview_name: str | None = None
) -> str:
    """Render the pipeline card of ``pipe`` as Markdown.

    Args:
        pipe: the compiled pipeline.
        governance: the registry's record of this version (``ref``, ``version``, ``state``,
            ``added_by``, ``added_at``, ``note``, ``single_user``, ``aliases``, ``history``), or
            ``None`` for a spec that is not in a registry. Missing keys are reported as not recorded.
        preview_name: file name (relative to the card) of a contact sheet to link, if any.

    Returns:
        The Markdown text; the same inputs under the same environment give the same text.

    Example:
        >>> import augledger
        >>> spec = augledger.parse_spec({"schema": 1, "name": "demo", "ops": [{"op": "HorizontalFlip"}]})
        >>> "| version | not registered |" in render_card(augledger.compile_spec(spec))
        True
    """
    resolved = pipe.resolved_spec
    op_lines = _walk(resolved["ops"], "ops", None)
    n_ops = sum(1 for line in op_lines if line.startswith("- "))
    out = [f"# Pipeline card: {_text(pipe.name)}", "", "## Facts", "", *_facts(pipe, resolved, governance)]
    out += ["", "## What it does", "",
            f"{len(resolved['ops'])} top-level op(s), {n_ops} in all, run in this order on every sample of an "
            "allowed split. Each op is named by its node path in the spec; a child's path extends its parent's.",
            "", *op_lines, "", "## Lifecycle", "", *_lifecycle(governance)]
    stamp = EnvStamp.current(pipe.modality).to_dict()
    versions = {k: v for k, v in stamp.items() if k != "backends"} | dict(sorted(stamp.get("backends", {}).items()))
    out += ["", "## Environment stamp", "",
            "Outputs are byte-identical only under these library versions (the environment this card was "
            "rendered in); under others augledger detects and reports the difference instead of promising equality.",
            "", "| component | version |", "| --- | --- |", *(f"| {_text(k)} | {_code(v)} |" for k, v in versions.items())]
    if preview_name is not None:
        out += ["", "## Preview", "", f"![preview]({quote(preview_name, safe='/._-~')})", "",
                "The contact sheet shows an original image and variants of it under this pipeline, one tile "
                "per epoch and labelled by epoch; the variants are deterministic, so regenerating it under the "
                "same environment stamp gives the same pixels."]
    # Arrays of scalars on one line: JSON strings hold no raw newline, so ",\n  " only separates items.
    spec_json = re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]",
                       json.dumps(resolved, indent=2, ensure_ascii=False))
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", spec_json)), default=0) + 1)
    out += ["", "## Resolved spec", "", "The fingerprint is the SHA-256 of this spec without `name`, `description` "
            "and `seed`.", "", f"{fence}json", spec_json, fence, ""]
    return "\n".join(out)


def write_card(
    path: str | Path,
    pipe: Pipeline,
    *,
    governance: Mapping[str, Any] | None = None,
    preview_image: str | Path | None = None,
    n: int = 8,
) -> list[Path]:
    """Write the card to ``path`` (UTF-8 Markdown) and, with ``preview_image``, its contact sheet.

    The contact sheet (the original and ``n`` variants, epochs ``0..n-1``, keyed by the image's
    file name) is written next to the card as ``<stem>.preview.png`` and linked by file name.
    Nothing is written when the preview image cannot be used.

    Returns:
        The files written: the card first, then the contact sheet if any.

    Raises:
        AugLedgerError: the preview image is missing, unreadable or not a usable image (the
            message names the file and the fix).
        ValueError: ``n`` is below 1.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 (the number of variants in the preview); got {n!r}")
    path = Path(path)
    preview = path.with_name(f"{path.stem}.preview.png")
    grid_png = None
    if preview_image is not None:  # decoded and rendered before anything is written
        image = Path(preview_image)
        grid_png = encode_image(preview_grid(pipe, {"image": read_image_file(image, role="preview image")}, key=image.name, n=n), "png")
    text = render_card(pipe, governance=governance, preview_name=preview.name if grid_png is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))  # bytes, so no platform newline translation
    if grid_png is None:
        return [path]
    preview.write_bytes(grid_png)
    log.info("wrote pipeline card %s and its preview (%s)", path, pipe.fingerprint)
    return [path, preview]
