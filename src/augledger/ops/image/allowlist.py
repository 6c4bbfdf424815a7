"""Which Albumentations transforms a spec may name, and how names are written.

A spec names ops by Albumentations class name, bare (``HorizontalFlip``) or namespaced
(``albumentations.HorizontalFlip``); only the names here are accepted, so a spec can never reach
an arbitrary class or import path. Left out on purpose: transforms that need callables, file
paths, reference images or per-sample metadata (``Lambda``, ``FDA``, ``HistogramMatching``,
``Mosaic``, ``TextImage``, ...), conversions to tensors (``ToTensorV2``) and transforms that warn
on every construction (``PiecewiseAffine``: "very slow, use ElasticTransform"). Deprecated
aliases (``ShiftScaleRotate``, ...) are accepted and resolve to their modern equivalent
(:mod:`~augledger.ops.image.aliases`).
"""

from __future__ import annotations

import difflib

from augledger.errors import UnknownOpError

__all__ = ["COMPOSITIONS", "IMAGE_OPS", "NAMESPACE", "REFUSED", "canonical_op_name"]

NAMESPACE = "albumentations"

#: Albumentations transforms a spec may name. Reviewed by hand for 2.0.8 (see the module docstring
#: for what is left out). ``tests/ops/test_image_backend.py`` builds and runs every one of them.
IMAGE_OPS: tuple[str, ...] = (
    "AdditiveNoise", "AdvancedBlur", "Affine", "AtLeastOneBBoxRandomCrop", "AutoContrast",
    "BBoxSafeRandomCrop", "Blur", "CLAHE", "CenterCrop", "ChannelDropout", "ChannelShuffle",
    "ChromaticAberration", "CoarseDropout", "ColorJitter", "ConstrainedCoarseDropout", "Crop",
    "CropAndPad", "CropNonEmptyMaskIfExists", "D4", "Defocus", "Downscale", "ElasticTransform",
    "Emboss", "Equalize", "Erasing", "FancyPCA", "FromFloat", "GaussNoise",
    "GaussianBlur", "GlassBlur", "GridDistortion", "GridDropout", "GridElasticDeform", "HEStain",
    "HorizontalFlip", "HueSaturationValue", "ISONoise", "Illumination", "ImageCompression",
    "InvertImg", "LongestMaxSize", "MaskDropout", "MedianBlur", "Morphological", "MotionBlur",
    "MultiplicativeNoise", "NoOp", "Normalize", "OpticalDistortion", "Pad", "PadIfNeeded", "Perspective",
    "PixelDropout", "PlanckianJitter", "PlasmaBrightnessContrast", "PlasmaShadow",
    "Posterize", "RGBShift", "RandomBrightnessContrast", "RandomCrop", "RandomCropFromBorders",
    "RandomFog", "RandomGamma", "RandomGravel", "RandomGridShuffle", "RandomRain", "RandomResizedCrop",
    "RandomRotate90", "RandomScale", "RandomShadow", "RandomSizedBBoxSafeCrop", "RandomSizedCrop",
    "RandomSnow", "RandomSunFlare", "RandomToneCurve", "Resize", "RingingOvershoot", "Rotate",
    "SafeRotate", "SaltAndPepper", "Sharpen", "ShotNoise", "SmallestMaxSize", "Solarize", "Spatter",
    "SquareSymmetry", "Superpixels", "ThinPlateSpline", "ToFloat", "ToGray", "ToSepia", "Transpose",
    "UnsharpMask", "VerticalFlip", "XYMasking", "ZoomBlur",
)  # fmt: skip

#: Compositions and the params each accepts (beyond ``p`` and the child ``ops``).
COMPOSITIONS: dict[str, tuple[str, ...]] = {
    "OneOf": (),
    "OneOrOther": (),
    "RandomOrder": ("n", "replace"),
    "SelectiveChannelTransform": ("channels",),
    "SomeOf": ("n", "replace"),
    "Sequential": (),
}

#: Albumentations 2.0.8 transforms a spec may not name, and why (the error says it; so does the README).
REFUSED: dict[str, str] = {
    "Lambda": "runs arbitrary Python code; a spec is data",
    "FDA": "needs reference images passed per call",
    "HistogramMatching": "needs reference images passed per call",
    "PixelDistributionAdaptation": "needs reference images passed per call",
    "Mosaic": "needs other samples' images and targets passed per call",
    "OverlayElements": "needs overlay images and metadata passed per call",
    "TextImage": "needs font files and per-sample text metadata",
    "ToTensorV2": "makes a torch tensor: convert in the training loader, not in the augmentation spec",
    "PiecewiseAffine": "warns on every construction that it is very slow; use ElasticTransform",
    "TimeMasking": "deprecated alias whose draws no XYMasking spec reproduces; use "
                   "{op: XYMasking, params: {num_masks_x: [1, 1], mask_x_length: [0, N], fill: 0, fill_mask: 0}}",
    "FrequencyMasking": "deprecated alias whose draws no XYMasking spec reproduces; use "
                        "{op: XYMasking, params: {num_masks_y: [1, 1], mask_y_length: [0, N], fill: 0, fill_mask: 0}}",
    "RandomCropNearBBox": "needs a per-sample cropping box passed per call",
    "ToRGB": "changes the channel count of grey images, which offline runs already convert to RGB",
    "CenterCrop3D": "3D volumes are not an image sample", "CoarseDropout3D": "3D volumes are not an image sample",
    "CubicSymmetry": "3D volumes are not an image sample", "Pad3D": "3D volumes are not an image sample",
    "PadIfNeeded3D": "3D volumes are not an image sample", "RandomCrop3D": "3D volumes are not an image sample",
    "ToTensor3D": "makes a torch tensor of a 3D volume",
    "Compose": "the spec's op list is the Compose; nest with Sequential", "ReplayCompose": "records are augledger's job",
}

_IMAGE_OPS = frozenset(IMAGE_OPS)


def canonical_op_name(name: str, *, location: str) -> str:
    """Map ``HorizontalFlip`` or ``albumentations.HorizontalFlip`` to the canonical namespaced name.

    Raises:
        UnknownOpError: the name is not on the allowlist, with the closest allowed names.
    """
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in _IMAGE_OPS or bare in COMPOSITIONS:
        return f"{NAMESPACE}.{bare}"
    if bare in REFUSED:
        raise UnknownOpError(f"op {name!r} is not allowed in a spec: {REFUSED[bare]}", location=location)
    choices = [*IMAGE_OPS, *COMPOSITIONS]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[m] for m in difflib.get_close_matches(bare.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see `augledger spec schema`"
    if "." in bare or "/" in bare:
        hint = "a spec names ops by registered name, never by import path; " + hint
    raise UnknownOpError(f"op {name!r} is not an allowed image op; {hint}", location=location)
