"""Train/eval leakage: the same picture, or nearly the same, on both sides of a split.

:func:`check_leakage` compares a training set (an ``augledger run`` output folder, or a plain folder
of images) with one or more evaluation folders and finds:

* **identical** content: the SHA-256 of a file's bytes, for training sources (from the ledger's
  ``source_digest`` for an output folder), stored augmented outputs (``output_digest``) and every
  evaluation file; also between evaluation folders (a file in both ``val/`` and ``test/``).
* **near**-duplicates: a training source *or an augmented output* whose perceptual hash is within
  ``threshold`` bits (Hamming distance) of an evaluation image's. An output is traced back through
  the ledger to the source key it was made from. Each evaluation image is also hashed mirrored, so
  an output that was flipped left-right is compared the right way round.

**Which hash.** pHash (``imagehash.phash``): the image in grey, resized to 32x32, its 2-D DCT, and one
bit per coefficient of the 8x8 lowest frequencies (above or below their median): 64 bits. It keeps
the coarse structure of an image and drops what photometric augmentation and re-encoding change
(brightness, contrast, slight blur and noise, JPEG artefacts, rescaling), which average and
difference hashes (aHash, dHash) follow more closely; and a 64-bit hash is one ``uint64``, so all
pairs are compared at once with XOR and a popcount (:func:`hamming`). Geometry (rotation, crops,
large shifts) moves it: near-duplicate search finds re-encoded, rescaled and recoloured copies,
not every augmented view.

**The threshold** (default :data:`DEFAULT_THRESHOLD`, 8 of 64 bits), measured on scikit-image's
and scikit-learn's sample photographs (the README's "Leakage and group splits" has the table):
different images were 20 or more bits apart (325 pairs of 26 images; 1st percentile 22), and among
19,900 pairs of 96x96 tiles cut from them one pair was at 8 and one at 10; copies changed by
brightness +-40, contrast x1.3, a 5x5 blur, rescaling to 1/2 or 1/4, JPEG quality 60 or
Gaussian noise (sigma 8) were at most 2 bits away on average, and 93-97% of the tiles' copies were
within 8 bits (1-3% more within 10). 8 keeps a margin of 12 bits below the closest different photographs.

Decoding goes through the project's image codec (:func:`augledger.io.image.decode_image`): a file it
would quarantine is listed in :attr:`LeakageReport.unreadable` with the reason, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from augledger.errors import AugLedgerError, BackendError, Quarantined, SourceError, UnsafePath
from augledger.io.image import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, decode_image
from augledger.run.folder import ORIGINAL_EPOCH
from augledger.run.sources import FolderSource

__all__ = ["DEFAULT_THRESHOLD", "HASH", "Finding", "LeakageReport", "Unreadable", "check_leakage", "hamming",
           "perceptual_hash"]

log = logging.getLogger(__name__)

#: Hamming distance (of 64 bits) at or below which two images count as near-duplicates (module docstring).
DEFAULT_THRESHOLD = 8
#: The perceptual hash: imagehash's pHash with an 8x8 DCT block (64 bits).
HASH = "phash-64"
#: Pairs compared per block: bounds the memory of the all-pairs distance matrix (8 bytes a pair).
_BLOCK_PAIRS = 1 << 22
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class Finding:
    """One leaked pair.

    Attributes:
        kind: ``identical`` (the same file bytes) or ``near`` (perceptual hashes within the threshold).
        eval_folder, eval_path: the evaluation folder as given and the file's path relative to it.
        distance: Hamming distance of the perceptual hashes (0 for ``identical``).
        train_key: the training source key (for an output, the key it was made from); ``None`` when
            the other side is another evaluation folder.
        output_path: the augmented output that matched, relative to the output folder (``None``: the source did).
        other_folder, other_path: for a file found in two evaluation folders, the first of them.
        mirrored: the match is with the evaluation image flipped left-right.
    """

    kind: Literal["identical", "near"]
    eval_folder: str
    eval_path: str
    distance: int
    train_key: str | None = None
    output_path: str | None = None
    other_folder: str | None = None
    other_path: str | None = None
    mirrored: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be compared: which side, its path, and why (a quarantine reason or an OS error)."""

    split: str
    path: str
    reason: str


@dataclass
class LeakageReport:
    """What :func:`check_leakage` found; ``clean`` when there are no findings."""

    threshold: int
    findings: list[Finding] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    #: How many items were compared: ``train_sources``, ``train_outputs`` and one entry per eval folder.
    compared: dict[str, int] = field(default_factory=dict)
    hash: str = HASH

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "hash": self.hash, "threshold": self.threshold, "compared": dict(self.compared),
            "findings": [f.to_dict() for f in self.findings], "unreadable": [asdict(u) for u in self.unreadable],
        }


def _imagehash() -> Any:
    try:
        return importlib.import_module("imagehash")
    except ImportError:
        raise BackendError(
            "augledger's leakage check needs the 'leakage' extra (imagehash): pip install 'augledger[leakage]'"
        ) from None


def perceptual_hash(image: NDArray[Any], *, mirrored: bool = False) -> int:
    """The 64-bit pHash of an HxWx3 (or HxW) uint8 image as an int (bit order as ``imagehash`` prints it).

    Raises:
        BackendError: ``imagehash`` is not installed.
    """
    from PIL import Image

    module = _imagehash()
    array = np.ascontiguousarray(image[:, ::-1] if mirrored else image)
    return int(str(module.phash(Image.fromarray(array))), 16)


def hamming(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """All-pairs Hamming distances of two arrays of 64-bit hashes: an ``(len(a), len(b))`` array.

    Example:
        >>> hamming(np.array([0b1011], dtype=np.uint64), np.array([0, 0b1000], dtype=np.uint64)).tolist()
        [[3, 2]]
    """
    xor = np.bitwise_xor(a[:, None], b[None, :])
    counter = getattr(np, "bitwise_count", None)  # numpy >= 2.0
    if counter is not None:
        return np.asarray(counter(xor), dtype=np.uint8)
    counts: NDArray[np.uint8] = _POPCOUNT8[xor.view(np.uint8)].reshape(*xor.shape, 8).sum(axis=-1, dtype=np.uint8)
    return counts


@dataclass
class _Side:
    """Hashed items of one side: labels, perceptual hashes, and SHA-256 -> first label."""

    labels: list[tuple[str, str | None]] = field(default_factory=list)  # (key, output path or None)
    hashes: list[int] = field(default_factory=list)
    digests: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def array(self) -> NDArray[np.uint64]:
        return np.array(self.hashes, dtype=np.uint64)


def _hash_file(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(pHash, pHash of the mirror image) of an encoded image; raises :class:`Quarantined`."""
    image, _ = decode_image(data, max_pixels=max_pixels)
    return perceptual_hash(image), perceptual_hash(image, mirrored=True)


def _folder_files(root: Path) -> list[str]:
    if not root.is_dir():
        raise SourceError(f"{str(root)!r} is not a folder; pass a folder of images")
    return FolderSource(root, IMAGE_EXTENSIONS).keys()


def _read(root: Path, key: str) -> bytes:
    from augledger.io.store import LocalStore

    return LocalStore(root).read(key)


def _train_side(train: Path, report: LeakageReport, max_pixels: int, source: str | Path | None = None) -> _Side:
    side = _Side()
    if (train / "manifest.json").is_file():
        from augledger.run.output import OutputFolder

        folder = OutputFolder(train, source=source)
        try:
            rows = folder.ledger.rows()
            sources: dict[str, str | None] = {}
            for row in rows:
                sources.setdefault(row["key"], row.get("source_digest"))
            for key, digest in sorted(sources.items()):
                if digest is not None:
                    side.digests.setdefault(str(digest), (key, None))
                _add_item(side, report, key, None, lambda k=key: folder.job.read_source(k), max_pixels, "train")
            outputs = 0
            for row in rows:
                if row["status"] != "ok" or not row.get("output_path") or row["epoch"] == ORIGINAL_EPOCH:
                    continue  # an original copy is the source's bytes: compared as the source already
                path = str(row["output_path"])
                if row.get("output_digest"):
                    side.digests.setdefault(str(row["output_digest"]), (row["key"], path))
                outputs += 1
                _add_item(side, report, row["key"], path, lambda p=path: _stored(folder, p), max_pixels, "train")
        finally:
            folder.close()
        report.compared["train_sources"], report.compared["train_outputs"] = len(sources), outputs
        return side
    keys = _folder_files(train)
    for key in keys:
        _add_item(side, report, key, None, lambda k=key: _read(train, k), max_pixels, "train", digests=True)
    report.compared["train_sources"], report.compared["train_outputs"] = len(keys), 0
    return side


def _stored(folder: Any, path: str) -> bytes:
    data = folder.stored_output(path)
    if data is None:
        raise FileNotFoundError(f"stored output {path!r} is missing")
    return bytes(data)


def _add_item(side: _Side, report: LeakageReport, key: str, output: str | None, read: Any, max_pixels: int,
              split: str, *, digests: bool = False) -> None:
    where = output or key
    try:
        data = read()
        if digests:
            side.digests.setdefault("sha256:" + hashlib.sha256(data).hexdigest(), (key, output))
        side.hashes.append(_hash_file(data, max_pixels)[0])
        side.labels.append((key, output))
    except Quarantined as exc:
        report.unreadable.append(Unreadable(split, where, f"{exc.reason}: {exc}"))
    except (OSError, UnsafePath, AugLedgerError) as exc:
        report.unreadable.append(Unreadable(split, where, f"unreadable: {getattr(exc, 'strerror', None) or exc}"))


def _eval_items(root: Path, report: LeakageReport, max_pixels: int) -> Iterator[tuple[str, str, int, int]]:
    """(path, SHA-256, pHash, mirrored pHash) of each readable image of an evaluation folder."""
    for path in _folder_files(root):
        try:
            data = _read(root, path)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            plain, mirror = _hash_file(data, max_pixels)
        except Quarantined as exc:
            report.unreadable.append(Unreadable(str(root), path, f"{exc.reason}: {exc}"))
            continue
        except (OSError, UnsafePath) as exc:
            report.unreadable.append(Unreadable(str(root), path, f"unreadable: {getattr(exc, 'strerror', None) or exc}"))
            continue
        yield path, digest, plain, mirror


def check_leakage(
    train: str | Path, evals: Sequence[str | Path], *, threshold: int = DEFAULT_THRESHOLD,
    max_pixels: int = DEFAULT_MAX_PIXELS, source: str | Path | None = None,
) -> LeakageReport:
    """Find evaluation images that are identical or near-identical to training data.

    Args:
        train: an ``augledger run`` output folder (its sources, found through ``run.json``, and its
            augmented outputs are compared; outputs are traced to their source keys through the
            ledger), or a plain folder of images.
        evals: folders of evaluation images (keys are paths relative to each).
        source: where the output folder's source is now, if it moved since the run.
        threshold: the largest Hamming distance (of 64 bits) that counts as a near-duplicate; 0
            finds perceptually identical images only.
        max_pixels: larger images are listed as unreadable (``too-large``), as a run would quarantine them.

    Returns:
        :class:`LeakageReport`: findings sorted by evaluation folder, path and distance; the files that
        could not be compared.

    Raises:
        BackendError: ``imagehash`` is not installed (``pip install 'augledger[leakage]'``).
        SourceError: ``train`` or an evaluation folder is not a folder; no evaluation folder given.
        LedgerError: ``train`` has a manifest but its ledger or source cannot be opened.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 64:
        raise SourceError(f"threshold must be a whole number of bits in [0, 64]; got {threshold!r}")
    if not evals:
        raise SourceError("give at least one evaluation folder (--eval DIR)")
    _imagehash()  # fail before any work when the extra is missing
    report = LeakageReport(threshold)
    side = _train_side(Path(train), report, max_pixels, source)
    train_hashes = side.array()
    seen_eval: dict[str, tuple[str, str]] = {}
    for folder in (Path(e) for e in evals):
        items = list(_eval_items(folder, report, max_pixels))
        report.compared[str(folder)] = len(items)
        identical: set[tuple[str, str]] = set()
        for path, digest, _plain, _mirror in items:
            if digest in side.digests:
                key, output = side.digests[digest]
                report.findings.append(Finding("identical", str(folder), path, 0, train_key=key, output_path=output))
                identical.add((key, path))
            if digest in seen_eval and seen_eval[digest][0] != str(folder):
                first = seen_eval[digest]
                report.findings.append(Finding("identical", str(folder), path, 0, other_folder=first[0], other_path=first[1]))
            seen_eval.setdefault(digest, (str(folder), path))
        report.findings.extend(_near(side, train_hashes, folder, items, threshold, identical))
    report.findings.sort(key=lambda f: (f.eval_folder, f.eval_path, f.kind, f.distance, f.train_key or "", f.output_path or ""))
    log.info("leakage check: %d finding(s), %d unreadable file(s)", len(report.findings), len(report.unreadable))
    return report


def _near(side: _Side, train_hashes: NDArray[np.uint64], folder: Path, items: Sequence[tuple[str, str, int, int]],
          threshold: int, identical: set[tuple[str, str]]) -> Iterable[Finding]:
    """Near findings of one evaluation folder: per (source key, eval image), the closest match
    (the source itself on a tie, else the closest output)."""
    if not len(train_hashes) or not items:
        return []
    plain = np.array([i[2] for i in items], dtype=np.uint64)
    mirror = np.array([i[3] for i in items], dtype=np.uint64)
    best: dict[tuple[str, int], tuple[int, bool, str | None]] = {}
    step = max(1, _BLOCK_PAIRS // len(train_hashes))
    for start in range(0, len(items), step):
        d_plain = hamming(train_hashes, plain[start:start + step])
        d_mirror = hamming(train_hashes, mirror[start:start + step])
        distance = np.minimum(d_plain, d_mirror)
        for t, e in zip(*np.nonzero(distance <= threshold), strict=True):
            key, output = side.labels[int(t)]
            d = int(distance[t, e])
            flipped = bool(d_mirror[t, e] < d_plain[t, e])
            slot = (key, start + int(e))
            rank = (d, output is not None)
            held = best.get(slot)
            if held is None or rank < (held[0], held[2] is not None):
                best[slot] = (d, flipped, output)
    found = []
    for (key, index), (d, flipped, output) in best.items():
        path = items[index][0]
        if (key, path) in identical:
            continue  # the same bytes as this key's source or output: reported as identical already
        found.append(Finding("near", str(folder), path, d, train_key=key, output_path=output, mirrored=flipped))
    return found
