"""Where every random draw of augledger is born.

A sample's randomness is a pure function of four values: the pipeline ``fingerprint``, the run
``seed``, the ``epoch`` (the copy index when materialising offline) and the sample ``key``. Nothing
else feeds it: not the worker id, pid, rank, time, input order, nor Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np

__all__ = ["SEEDING_VERSION", "generators_for", "seed_for"]

#: Bumped only if the derivation below changes; it is part of every fingerprint.
SEEDING_VERSION = "v1"
_DOMAIN = "augledger/seed/v1"


def seed_for(fingerprint: str, *, seed: int, epoch: int, key: str) -> int:
    """Derive the 128-bit seed of one sample, independent of worker count, order and process.

    The four values are encoded as a JSON array, so no two distinct tuples share a payload (unlike
    additive mixing, where ``seed=0, epoch=1`` collides with ``seed=1, epoch=0``), and hashed with
    BLAKE2b, which is stable across processes and platforms (unlike ``hash()``).

    Args:
        fingerprint: ``Pipeline.fingerprint`` of the resolved spec.
        seed: run-level seed from the spec.
        epoch: training epoch online, copy index offline.
        key: stable sample identity, e.g. a POSIX path relative to the source root.

    Returns:
        An integer in ``[0, 2**128)``.

    Example:
        >>> a = seed_for("sha256:ab", seed=0, epoch=1, key="x.jpg")
        >>> a == seed_for("sha256:ab", seed=0, epoch=1, key="x.jpg")
        True
        >>> a == seed_for("sha256:ab", seed=1, epoch=0, key="x.jpg")
        False
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str (a stable sample identity such as a relative path); got {key!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"seed and epoch must be ints; got seed={seed!r}, epoch={epoch!r}")
    payload = json.dumps([_DOMAIN, fingerprint, seed, epoch, key], ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(payload, digest_size=16).digest(), "little")


def generators_for(sample_seed: int) -> tuple[np.random.Generator, random.Random]:
    """Build the NumPy and Python generators that one sample's draws come from.

    NumPy's stream goes through ``SeedSequence`` hashing (PCG64); Python's ``random.Random`` seeds
    Mersenne Twister from the full 128-bit integer. The two mixings are unrelated, so the streams
    are independent in practice. Building both costs about 14 µs.
    """
    return np.random.Generator(np.random.PCG64(sample_seed)), random.Random(sample_seed)
