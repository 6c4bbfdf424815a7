"""MixUp and CutMix over a batch of :class:`~augledger.run.online.datasets.AugmentedDataset`.

The mixer runs inside ``AugmentedDataset.__getitems__``, the one place that sees a whole batch
with its ``(epoch, key)`` pairs, after every sample's own augmentation and ``from_sample``. Which
sample is mixed with which, and by how much, is drawn by :func:`augledger.run.batch_mix.draw_mix`
from the batch's keys and epochs, so it is the same whichever worker loads the batch. Each
ledger row records its draw in the ``mix`` column, which ``augledger verify`` recomputes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch

from augledger.errors import LoaderError, SampleError
from augledger.ledger.row import LedgerRow
from augledger.record import Record
from augledger.run.batch_mix import MixDraw, batch_identity, draw_mix, mix_record

__all__ = ["BatchMix", "CutMix", "MixUp"]


class BatchMix:
    """Mix pairs of samples of a batch and their labels; the base of :class:`MixUp` and :class:`CutMix`.

    Sample ``i`` of a batch is mixed with sample ``perm[i]`` of the same batch (a permutation drawn
    per batch; a sample may draw itself, which leaves it unchanged), with probability ``p`` per
    sample, with its own weight ``lam ~ Beta(alpha, alpha)``. Labels become soft targets: the
    one-hot vectors of the two labels weighted by ``lam`` and ``1 - lam``.

    Args:
        alpha: both parameters of the Beta distribution lambda is drawn from (> 0).
        p: probability that a sample is mixed (drawn per sample, not per batch). A sample not
            mixed keeps its image and gets its one-hot label.
        num_classes: the label vector's length (required).
        label: where the label is in what the dataset yields: a position in a tuple/list item, or
            a field of a dict item. Default: ``1`` for tuples/lists, ``"label"`` for dicts. A label
            is a class index (int, or a 0-d array/tensor) or already a vector of ``num_classes``
            weights.
        image: where the image is, likewise. Default: ``0`` for tuples/lists, ``"image"`` for dicts.
            A NumPy array is HxW(xC) (the pipeline's layout); a tensor is (C)xHxW (torch's).

    Raises:
        LoaderError: ``alpha``, ``p``, ``num_classes``, ``label`` or ``image`` is not valid.
    """

    op: ClassVar[str] = ""

    def __init__(
        self, *, alpha: float, p: float = 1.0, num_classes: int | None = None, label: str | int | None = None,
        image: str | int | None = None,
    ) -> None:
        name = type(self).__name__
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise LoaderError(f"{name}: alpha must be a finite number > 0; got {alpha!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise LoaderError(f"{name}: p must be a number in [0, 1]; got {p!r}")
        if num_classes is None:
            raise LoaderError(f"{name} needs num_classes= to turn labels into soft targets, e.g. {name}(alpha=..., num_classes=10)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise LoaderError(f"{name}: num_classes must be an int >= 2; got {num_classes!r}")
        for arg, value in (("label", label), ("image", image)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
                raise LoaderError(f"{name}: {arg} must be a field name (str) or a position (int); got {value!r}")
        if label is not None and label == image:
            raise LoaderError(f"{name}: label and image name the same place ({label!r})")
        self.alpha, self.p, self.num_classes = float(alpha), float(p), num_classes
        self.label, self.image = label, image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, p={self.p}, num_classes={self.num_classes})"

    def mix(
        self, outputs: Sequence[Any], samples: Sequence[tuple[int, str]], pending: list[tuple[LedgerRow, Record]] | None,
        *, fingerprint: str, seed: int,
    ) -> list[Any]:
        """Mix a batch of outputs (what ``from_sample`` returned, in batch order) and fill the rows' ``mix``.

        Args:
            outputs: the batch's items, each holding an image and a label.
            samples: each item's ``(epoch, key)``, in the same order.
            pending: the batch's ledger rows (the sampled subset, in batch order), or ``None``.
            fingerprint, seed: the pipeline's.

        Raises:
            SampleError: an item has no image or label where ``image``/``label`` say, a label is
                outside ``[0, num_classes)``, or the images of the batch differ in shape.
        """
        n = len(outputs)
        if n == 0:
            return []
        images = [self._field(out, "image", samples[i][1]) for i, out in enumerate(outputs)]
        labels = [self._onehot(self._field(out, "label", samples[i][1]), samples[i][1]) for i, out in enumerate(outputs)]
        shape = tuple(images[0].shape)
        for (_, key), img in zip(samples, images, strict=True):
            if not isinstance(img, (np.ndarray, torch.Tensor)):
                raise SampleError(f"{self.op}: the image of {key!r} is a {type(img).__name__}; expected a numpy array or a tensor")
            if tuple(img.shape) != shape or type(img) is not type(images[0]):
                raise SampleError(f"{self.op}: the images of a batch must share type and shape to be mixed; "
                                  f"{key!r} is {type(img).__name__} {tuple(img.shape)}, the first {shape}")
        hw = _image_hw(images[0])
        batch = batch_identity(samples)
        draws = draw_mix(self.op, alpha=self.alpha, p=self.p, fingerprint=fingerprint, seed=seed, batch=batch,
                         size=n, image_hw=hw)
        mixed = []
        for i, draw in enumerate(draws):
            j = draw.partner
            image = self._mix_images(images[i], images[j], draw)
            target = (labels[i] * draw.lam + labels[j] * (1.0 - draw.lam)).astype(np.float32)
            soft: Any = torch.from_numpy(target) if isinstance(images[i], torch.Tensor) else target
            mixed.append(self._replace(outputs[i], image, soft))
        if pending:
            self._record(pending, samples, draws, batch, hw)
        return mixed

    def _mix_images(self, own: Any, partner: Any, draw: MixDraw) -> Any:
        raise NotImplementedError

    def _record(
        self, pending: list[tuple[LedgerRow, Record]], samples: Sequence[tuple[int, str]], draws: list[MixDraw],
        batch: str, hw: tuple[int, int],
    ) -> None:
        # Rows arrive in batch order but only for the sampled subset: walk the batch to find each one's position.
        position = 0
        for row, _ in pending:
            while samples[position] != (row.epoch, row.key):
                position += 1
            draw = draws[position]
            row.mix = mix_record(self.op, alpha=self.alpha, p=self.p, batch=batch, size=len(samples),
                                 position=position, draw=draw, partner_key=samples[draw.partner][1], image_hw=hw)
            position += 1

    def _where(self, item: Any, which: str) -> str | int:
        chosen = self.label if which == "label" else self.image
        if chosen is not None:
            return chosen
        if isinstance(item, Mapping):
            return which
        return 1 if which == "label" else 0

    def _field(self, item: Any, which: str, key: str) -> Any:
        if not isinstance(item, (Mapping, tuple, list)):
            raise SampleError(
                f"{type(self).__name__}: the dataset yields a bare {type(item).__name__} for {key!r}; batch mixing "
                "needs items holding an image and a label, such as (image, label) or a dict (use from_sample= to build them)"
            )
        where = self._where(item, which)
        if isinstance(item, Mapping):
            if where in item:
                return item[where]
        elif isinstance(item, (tuple, list)) and isinstance(where, int):
            if -len(item) <= where < len(item):
                return item[where]
        raise SampleError(
            f"{type(self).__name__}: cannot find the {which} of {key!r} at {where!r} in a {type(item).__name__} "
            f"item; the dataset (after from_sample) must yield a tuple/list or dict holding an image and a "
            f"label. Pass {which}= (a position or a field name) to say where it is."
        )

    def _onehot(self, label: Any, key: str) -> npt.NDArray[np.float64]:
        value = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        if value.ndim == 1 and value.shape[0] == self.num_classes and value.dtype.kind in "fiu":
            return value.astype(np.float64)
        if value.ndim == 0 and value.dtype.kind in "iu" and 0 <= int(value) < self.num_classes:
            out = np.zeros(self.num_classes, dtype=np.float64)
            out[int(value)] = 1.0
            return out
        raise SampleError(
            f"{type(self).__name__}: the label of {key!r} is {label!r}; expected a class index in "
            f"[0, {self.num_classes}) or a vector of {self.num_classes} weights"
        )

    def _replace(self, item: Any, image: Any, label: Any) -> Any:
        places = {self._where(item, "image"): image, self._where(item, "label"): label}
        if isinstance(item, Mapping):
            merged = dict(item)
            merged.update(places)
            return merged
        values = list(item)
        for where, value in places.items():
            values[int(where)] = value
        if hasattr(item, "_fields"):  # a namedtuple takes its fields as arguments
            return type(item)(*values)
        return type(item)(values)


class MixUp(BatchMix):
    """MixUp (Zhang et al. 2018): ``lam * image + (1 - lam) * partner``, labels likewise.

    Images come out as float32 (a uint8 array or tensor is converted without rescaling, so values
    stay in [0, 255]; a float tensor keeps its dtype), every image of the batch, mixed or not, so
    the batch collates. ``lam ~ Beta(alpha, alpha)``; ``alpha=0.2`` is the paper's ImageNet value.

    Example:
        >>> train = AugmentedDataset(ds, pipeline, key=keys,
        ...                          batch_mix=MixUp(alpha=0.2, num_classes=10))  # doctest: +SKIP
    """

    op = "augledger.MixUp"

    def _mix_images(self, own: Any, partner: Any, draw: MixDraw) -> Any:
        if isinstance(own, torch.Tensor):
            dtype = own.dtype if own.is_floating_point() else torch.float32
            t_own, t_partner = own.to(dtype), partner.to(dtype)
            return t_own.clone() if not draw.applied else t_own * draw.lam + t_partner * (1.0 - draw.lam)
        a_own = np.asarray(own, dtype=np.float32)
        if not draw.applied:
            return a_own.copy()
        lam = np.float32(draw.lam)
        return a_own * lam + np.asarray(partner, dtype=np.float32) * (np.float32(1.0) - lam)


class CutMix(BatchMix):
    """CutMix (Yun et al. 2019): a box of the partner pasted into the image; ``lam`` is the area left.

    The box's sides are ``sqrt(1 - lam)`` of the image's, centred on a uniform pixel and clipped
    to the image; the recorded (and label) lambda is the fraction of the image outside the box,
    after clipping. Images keep their dtype (uint8 stays uint8). ``alpha=1.0`` (lambda uniform)
    is the paper's value.

    Example:
        >>> train = AugmentedDataset(ds, pipeline, key=keys,
        ...                          batch_mix=CutMix(alpha=1.0, num_classes=10))  # doctest: +SKIP
    """

    op = "augledger.CutMix"

    def _mix_images(self, own: Any, partner: Any, draw: MixDraw) -> Any:
        out = own.clone() if isinstance(own, torch.Tensor) else np.array(own, copy=True)
        if draw.box is not None:
            x0, y0, x1, y1 = draw.box
            if isinstance(own, torch.Tensor):
                out[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            else:
                out[y0:y1, x0:x1] = partner[y0:y1, x0:x1]
        return out


def _image_hw(image: Any) -> tuple[int, int]:
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor):
        if len(shape) < 2:
            raise SampleError(f"a tensor image must be (C)xHxW; got shape {shape}")
        return int(shape[-2]), int(shape[-1])
    if len(shape) not in (2, 3):
        raise SampleError(f"an array image must be HxW or HxWxC; got shape {shape}")
    return int(shape[0]), int(shape[1])
