"""Workarounds for Autobahn's eager debug logging, applied when txhyco's relay or bridges load.

Autobahn's ``WebSocketProtocol._connectionMade`` pretty-prints its whole
configuration for a debug log line on *every* connection, whether or not
debug logging is on (the argument is built before the call). That costs about
a millisecond per WebSocket -- the largest single cost of opening a relayed
connection (benchmarks/, "connection set-up"). Replacing the module's
``pformat`` with a lazy one keeps the log text identical and only formats it
when a debug observer actually reads the event.

The same goes for ``hltype``/``hlval``, which colour the arguments of debug
lines on every ``sendData`` (each message sent): about a tenth of a listener's
time per small message. In the WebSocket protocol modules they become lazy
too; they are only ever passed as log-event fields there.

And Autobahn builds an NVX masker per received frame, whose C buffers cost
more than the XOR itself for small frames: frames up to 4 KiB are unmasked
with wsaccel's masker (same bytes, same interface) instead.
"""
from __future__ import annotations

import pprint

import autobahn.twisted.websocket as _twisted_websocket
import autobahn.websocket.protocol as _protocol
from autobahn import util as _util


class LazyPformat:
    """``pformat(obj)``, computed when the log event is formatted."""

    __slots__ = ("_obj",)

    def __init__(self, obj, *args, **kwargs) -> None:
        self._obj = obj

    def __str__(self) -> str:
        return pprint.pformat(self._obj)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class LazyCall:
    """``func(*args)``, computed when the log event is formatted."""

    __slots__ = ("_func", "_args")

    def __init__(self, func, *args) -> None:
        self._func = func
        self._args = args

    def __str__(self) -> str:
        return str(self._func(*self._args))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy(func):
    def wrapper(*args):
        return LazyCall(func, *args)

    wrapper.__wrapped__ = func
    return wrapper


#: Frames up to this size are unmasked with wsaccel's masker when available.
_SMALL_FRAME = 4096


def _use_cheap_small_frame_masker() -> None:
    """Unmask small frames with a masker that is cheap to create.

    Autobahn builds a masker object per received frame; its NVX (cffi)
    masker allocates C buffers in the constructor, which costs more than
    the XOR itself for the few hundred bytes of a control-channel command
    (~3 us vs ~0.6 us a frame). wsaccel's masker gives the same bytes and
    the same ``pointer()``; large frames keep NVX's SIMD masker.
    Process-wide (the name Autobahn's frame parser calls), idempotent.
    """
    try:
        from wsaccel.xormask import createXorMasker
    except ImportError:
        return
    import autobahn.websocket.protocol as ab_protocol

    original = ab_protocol.create_xor_masker
    if getattr(original, "txhyco_small_frames", False):
        return

    def create_xor_masker(mask, length=None):
        if length is not None and length <= _SMALL_FRAME:
            return createXorMasker(mask, length)
        return original(mask, length)

    create_xor_masker.txhyco_small_frames = True  # type: ignore[attr-defined]
    ab_protocol.create_xor_masker = create_xor_masker


def apply() -> None:
    if _protocol.pformat is not LazyPformat:
        _protocol.pformat = LazyPformat
    for module in (_protocol, _twisted_websocket):
        for name in ("hltype", "hlval"):
            if getattr(module, name, None) is getattr(_util, name):
                setattr(module, name, _lazy(getattr(_util, name)))
    _use_cheap_small_frame_masker()


apply()
