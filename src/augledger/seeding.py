"""Where every random draw of augledger is born.

A sample's randomness is a pure function of four values: the pipeline ``fingerprint``, the run
``seed``, the ``epoch`` (the copy index when materialising offline) and the sample ``key``. Nothing
else feeds it: not the worker id, pid, rank, time, input order, nor Python's salted ``hash()``.
"""

from __future__ import annotations

import _random
import hashlib
import json
import random
from json.encoder import encode_basestring  # json.dumps's own str encoder for ensure_ascii=False
from typing import Any

import numpy as np

__all__ = ["PCG_PERSON", "SEEDING_VERSION", "SampleGenerators", "SeedDeriver", "generators_for", "seed_for"]

#: Bumped only if the derivation below changes; it is part of every fingerprint.
SEEDING_VERSION = "v1"
_DOMAIN = "augledger/seed/v1"
#: BLAKE2b personalisation of the PCG64 state derived from a sample seed (:func:`generators_for`); public so
#: code that steps many generators side by side (tabular SMOTE) derives the very same states.
PCG_PERSON = b"augledger-pcg64"


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


class SeedDeriver:
    """:func:`seed_for` with the fingerprint and run seed fixed: the same values at about a third of the cost.

    The JSON payload's prefix (domain, fingerprint, seed) is hashed once; each call copies that
    BLAKE2b state and feeds it only the epoch and the key, encoded exactly as ``json.dumps`` does.
    Tests check equality with :func:`seed_for` on arbitrary keys.
    """

    __slots__ = ("_prefix", "fingerprint", "seed")

    def __init__(self, fingerprint: str, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not isinstance(fingerprint, str):
            raise TypeError(f"fingerprint must be a str and seed an int; got {fingerprint!r}, {seed!r}")
        self.fingerprint = fingerprint
        self.seed = seed
        head = json.dumps([_DOMAIN, fingerprint, seed], ensure_ascii=False)
        self._prefix = hashlib.blake2b(head[:-1].encode("utf-8") + b", ", digest_size=16)

    def __call__(self, *, epoch: int, key: str) -> int:
        if type(key) is not str:
            if not isinstance(key, str):
                raise TypeError(f"key must be a str (a stable sample identity such as a relative path); got {key!r}")
            key = str.__str__(key)
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"epoch must be an int; got epoch={epoch!r}")
        h = self._prefix.copy()
        h.update(f"{int.__repr__(epoch)}, {encode_basestring(key)}]".encode())
        return int.from_bytes(h.digest(), "little")


def _pcg64_state(sample_seed: int) -> Any:
    # PCG64 needs 128 bits of state and an odd 128-bit increment. Both come from one BLAKE2b call
    # over the sample seed; setting the state directly costs ~2.5 µs where PCG64(int) (which runs
    # SeedSequence) costs ~17 µs, about 1.4% of a 256x256 pipeline call.
    words = hashlib.blake2b(sample_seed.to_bytes(16, "little"), digest_size=32, person=PCG_PERSON).digest()
    return {
        "bit_generator": "PCG64",
        "state": {
            "state": int.from_bytes(words[:16], "little"),
            "inc": int.from_bytes(words[16:], "little") | 1,
        },
        "has_uint32": 0,
        "uinteger": 0,
    }


def generators_for(sample_seed: int) -> tuple[np.random.Generator, random.Random]:
    """Build fresh NumPy and Python generators for one sample's draws.

    NumPy's PCG64 state and increment are BLAKE2b-derived from the sample seed; Python's
    ``random.Random`` seeds Mersenne Twister from the 128-bit integer itself. The two mixings are
    unrelated, so the streams are independent in practice. :class:`SampleGenerators` gives the same
    streams while reusing its objects.
    """
    bit_generator = np.random.PCG64()
    bit_generator.state = _pcg64_state(sample_seed)
    return np.random.Generator(bit_generator), random.Random(sample_seed)


class SampleGenerators:
    """One NumPy and one Python generator, re-seeded in place for each sample.

    Equivalent to :func:`generators_for` (same streams) at about a third of the cost. Not
    thread-safe: keep one per thread, as ``Pipeline`` does.
    """

    __slots__ = ("_bit_generator", "numpy", "python")

    def __init__(self) -> None:
        self._bit_generator = np.random.PCG64()
        self.numpy = np.random.Generator(self._bit_generator)
        self.python = random.Random()

    def reseed(self, sample_seed: int) -> tuple[np.random.Generator, random.Random]:
        self._bit_generator.state = _pcg64_state(sample_seed)
        # random.Random.seed(int) is this C call plus resetting gauss_next; calling both directly
        # skips a Python frame (~1 µs of the ~5 µs Mersenne Twister seeding costs).
        _seed_mersenne(self.python, sample_seed)
        self.python.gauss_next = None  # type: ignore[attr-defined]
        return self.numpy, self.python


_seed_mersenne = _random.Random.seed
