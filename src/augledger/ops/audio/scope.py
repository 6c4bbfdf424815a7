"""Running audiomentations on the process-global RNGs without touching the caller's draws.

audiomentations draws every random value from the global ``random`` module and the legacy global
``numpy.random`` (partly inside ``apply``: the noise of ``AddGaussianNoise``, the crop start of
``AdjustDuration``). :func:`seeded` runs one call in a scope that

1. takes a process-wide lock (the global RNGs are shared by all threads, so audio applies are
   serialised: two threads augmenting at once would interleave their draws);
2. saves the caller's ``random`` state and ``numpy.random`` generator;
3. seeds both from the sample's 128-bit seed (two seeds derived by one BLAKE2b call: 128 bits for
   Python's Mersenne Twister, four 32-bit words for NumPy's legacy seeding);
4. runs the call, and restores both states, also when the call raises.

**Cost.** ``np.random.get_state``/``set_state`` convert the 624-word Mersenne Twister state to and
from Python objects (~45 µs each). The scope avoids them: the global ``RandomState`` is pointed at
a private, freshly seeded ``MT19937`` and then back at the caller's, whose state is never read or
written (``RandomState.__init__(bit_generator)``, ~0.2 µs). Re-pointing clears the legacy
Box-Muller cache, so the scope first checks whether the caller has a cached normal pending (a
read of the ``has_gauss`` flag, whose offset is found once on a private ``RandomState`` and
checked by value; if it cannot be found, or a normal is pending, the exact ``get_state`` path is
taken). ``benchmarks/audio.py`` measures the scope: about 40 µs per call on a quiet machine (the exact path, taken when the caller has a
``normal`` cached, about 140-280 µs), most of it Python's own
``getstate``/``setstate`` and seeding.

Code in other threads that draws from the global RNGs *while* an audio apply runs gets draws of
the sample's stream (and changes it): keep such code out of the augmenting threads' way.
"""

from __future__ import annotations

import ctypes
import hashlib
import random
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["LOCK", "derive_seeds", "seeded"]

T = TypeVar("T")

#: Serialises every audio apply in the process (the global RNGs are process-wide).
LOCK = threading.Lock()
_PERSON = b"augledger-audio"
_GLOBAL: np.random.RandomState = np.random.mtrand._rand  # the RandomState behind np.random.uniform & co.


def derive_seeds(sample_seed: int) -> tuple[int, np.ndarray[Any, Any]]:
    """The Python ``random`` seed (128 bits) and the NumPy legacy seed (four ``uint32`` words) of a sample."""
    words = hashlib.blake2b(sample_seed.to_bytes(16, "little"), digest_size=32, person=_PERSON).digest()
    return int.from_bytes(words[:16], "little"), np.frombuffer(words[16:], dtype="<u4").astype(np.uint32)


def _has_gauss_offset() -> int | None:
    """Offset of ``has_gauss`` in a ``RandomState`` object, found and checked on private instances."""
    size = type(_GLOBAL).__basicsize__
    try:
        probe = np.random.RandomState(12345)
        probe.standard_normal()  # leaves one cached normal
        state: Any = probe.get_state()
        if state[3] != 1:
            return None
        raw = ctypes.string_at(id(probe), size)
        at = raw.find(struct.pack("d", state[4]))
        offset = at - 8
        if at < 8 or raw.find(struct.pack("d", state[4]), at + 1) != -1 or raw[offset:offset + 4] != struct.pack("i", 1):
            return None
        fresh = np.random.RandomState(1)
        if ctypes.string_at(id(fresh) + offset, 4) != struct.pack("i", 0):
            return None
        return offset
    except Exception:  # pragma: no cover - another NumPy layout: the exact path is always taken
        return None


_OFFSET = _has_gauss_offset()
_ZERO = struct.pack("i", 0)


def _gauss_pending() -> bool:
    if _OFFSET is None:
        return True
    return ctypes.string_at(id(_GLOBAL) + _OFFSET, 4) != _ZERO


class _Private:
    """This thread of control's own Mersenne Twister, re-seeded for every sample (used under :data:`LOCK`)."""

    def __init__(self) -> None:
        self.bit_generator = np.random.MT19937()
        self.seeder = np.random.RandomState(self.bit_generator)


_private = _Private()


def seeded(sample_seed: int, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` with the global ``random`` and ``numpy.random`` seeded from ``sample_seed``;
    both are as they were afterwards, whatever ``call`` did (see the module docstring)."""
    py_seed, np_words = derive_seeds(sample_seed)
    with LOCK:
        py_state = random.getstate()
        caller_bits = _GLOBAL._bit_generator
        exact = _gauss_pending()
        np_state = _GLOBAL.get_state(legacy=False) if exact else None  # a dict: works for any bit generator
        try:
            random.seed(py_seed)
            _private.seeder.seed(np_words)  # legacy seeding, as np.random.seed(words) would do
            _GLOBAL.__init__(_private.bit_generator)  # type: ignore[misc]  # re-point; clears the normal cache
            return call(*args)
        finally:
            _GLOBAL.__init__(caller_bits)  # type: ignore[misc]
            if np_state is not None:
                _GLOBAL.set_state(np_state)
            random.setstate(py_state)
