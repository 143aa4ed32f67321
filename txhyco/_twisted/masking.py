"""The fastest XOR masker at hand, for the core's frame building (:mod:`txhyco.protocol.frames`).

The core masks with pure Python; these masker factories give the same bytes
from C. Each is a ``make_masker(mask, length)`` as the core expects.
"""
from __future__ import annotations

from autobahn.websocket.xormasker import create_xor_masker

try:
    # wsaccel masks a small frame about three times faster than Autobahn's
    # own (cffi) masker; from a few KiB up the cffi one is faster.
    from wsaccel.xormask import XorMaskerSimple as _SmallMasker
except ImportError:  # pragma: no cover - wsaccel is a dependency
    _SmallMasker = None

#: Payloads from this size up are masked with Autobahn's masker.
LARGE_PAYLOAD = 4096


def fast_masker(mask: bytes, length: int):
    """A stateful XOR masker for one frame's payload of ``length`` bytes."""
    if length < LARGE_PAYLOAD and _SmallMasker is not None:
        return _SmallMasker(mask)
    return create_xor_masker(mask, length)
