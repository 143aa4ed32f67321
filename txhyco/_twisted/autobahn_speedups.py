"""Cheaper Autobahn protocols for txhyco's own legs, and only for them.

Autobahn builds the arguments of its debug log lines whether or not debug
logging is on (they are evaluated before the call):

- every connection pretty-prints its whole configuration (``pformat`` of
  about thirty settings): most of what opening a WebSocket costs Autobahn.
  The relay pays it twice per relayed connection;
- every read and every write colours a few names (``hltype``/``hlval``);
- and every received masked frame (what the relay gets from senders and
  listeners) and every frame a client sends gets a fresh NVX masker, whose C
  buffers cost more than the XOR itself for small frames (wsaccel's gives
  the same bytes through the same interface for a fraction of it).

What each is worth (``benchmarks/lean_protocols.py``: an Autobahn echo server
over an in-memory transport, best of 15, on a loaded 2-core machine):
a connection (made, handshake answered) costs 250-300 us plain and about
110 us without the configuration dump; a 100-byte message (one masked frame
in, one frame out) 22-23 us plain, 18.5 with lazy colouring, 16-17 with the
small-frame masker, and 12.5 us with all of them (2 KiB: 24-25 against
16-18 us).

None of this changes Autobahn: txhyco's legs (the relay's, the control
channel, request rendezvous and stream legs) derive from
:class:`LeanServerProtocol` or :class:`LeanClientProtocol`, whose methods
that do such work are Autobahn's own functions, made again with a namespace
of their own in which those names are lazy (formatted only when a debug
observer reads the event: the same text; a structured observer of our legs'
events sees objects that format to it) or wsaccel's masker for small frames.
Autobahn's modules, its classes and everybody else's protocols (the
application's included, even when it is served through a txhyco listener)
keep Autobahn's behaviour. The configuration dump cannot be reached that way
(Autobahn calls that method through its class by name), so it is skipped
instead: our legs copy their settings from the factory as Autobahn does, and
Autobahn then finds none left to copy or print (its debug line shows ``[]``).

Each speed-up first checks that the internals it relies on are what they
were written against (the module-level names are Autobahn's own functions,
the methods use them, the masker gives the same bytes); where one is not,
that speed-up is left out and Autobahn's own method runs (:data:`ACTIVE`
says which are on).
"""
from __future__ import annotations

import inspect
import pprint
import types

import autobahn.twisted.websocket as _twisted_websocket
import autobahn.websocket.protocol as _protocol
import autobahn.websocket.xormasker as _xormasker
from autobahn import util as _util

#: Frames up to this size are (un)masked with wsaccel's masker.
SMALL_FRAME = 4096


class _LazyText:
    """``func(*args)`` as text, computed when a log event is formatted."""

    __slots__ = ("_func", "_args")

    def __init__(self, func, args) -> None:
        self._func = func
        self._args = args

    def __str__(self) -> str:
        return str(self._func(*self._args))

    def __repr__(self) -> str:
        return repr(str(self))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy_pformat(obj, *args, **kwargs) -> _LazyText:
    return _LazyText(lambda: pprint.pformat(obj, *args, **kwargs), ())


def _lazy(func):
    def later(*args) -> _LazyText:
        return _LazyText(func, args)

    return later


def _small_frame_masker(autobahn_masker):
    """``create_xor_masker`` that uses wsaccel's masker for frames up to SMALL_FRAME, else None."""
    try:
        from wsaccel.xormask import createXorMasker
    except ImportError:
        return None
    if autobahn_masker is createXorMasker:
        return None  # Autobahn uses wsaccel's already

    def create_xor_masker(mask, length=None):
        if length is not None and length <= SMALL_FRAME:
            return createXorMasker(mask, length)
        return autobahn_masker(mask, length)

    # Same bytes, whatever the pieces, and the same position, as Autobahn's.
    for size in (0, 1, 7, 125, SMALL_FRAME):
        mask, data = bytes([1, 2, 3, 250]), bytes(range(256)) * (size // 256 + 1)
        data = data[:size]
        ours, theirs = create_xor_masker(mask, size), autobahn_masker(mask, size)
        if ours.process(data[:5]) + ours.process(data[5:]) != theirs.process(data):
            return None
        if ours.pointer() != theirs.pointer():
            return None
    return create_xor_masker


#: What replacing each name is called in ACTIVE.
_LABELS = {"pformat": "lazy pformat", "hltype": "lazy hltype/hlval", "hlval": "lazy hltype/hlval",
           "create_xor_masker": "small-frame masker"}


def _replacements() -> dict:
    """{module: {name: replacement}} for the names found as expected in Autobahn's modules."""
    colouring = {name: getattr(_util, name, None) for name in ("hltype", "hlval")}
    found: dict = {_protocol: {}, _twisted_websocket: {}}
    for module in found:
        for name, function in colouring.items():
            if function is not None and getattr(module, name, None) is function:
                found[module][name] = _lazy(function)
    if getattr(_protocol, "pformat", None) is pprint.pformat:
        found[_protocol]["pformat"] = _lazy_pformat
    autobahn_masker = getattr(_xormasker, "create_xor_masker", None)
    if autobahn_masker is not None and getattr(_protocol, "create_xor_masker", None) is autobahn_masker:
        masker = _small_frame_masker(autobahn_masker)
        if masker is not None:
            found[_protocol]["create_xor_masker"] = masker
    return found


def _remade(func, namespace: dict):
    """``func`` again: the same code, looking up its globals in ``namespace``."""
    remade = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    remade.__kwdefaults__ = func.__kwdefaults__
    remade.__qualname__ = func.__qualname__
    remade.__module__ = func.__module__  # debug lines name the function as Autobahn's
    remade.__doc__ = func.__doc__
    remade.__dict__.update(func.__dict__)
    return remade


def _lean_methods(base: type, replacements: dict, used: set) -> dict:
    """The methods of ``base`` (as it resolves them) that use a replaced name, remade with it replaced.

    Adds the replaced names they use to ``used``.

    A function's namespace is a copy of its module's with the replacements:
    Autobahn's modules do not rebind their globals after import.
    """
    namespaces = {
        id(vars(module)): (dict(vars(module), **names), names.keys())
        for module, names in replacements.items() if names
    }
    methods: dict = {}
    seen: set = set()
    for klass in base.__mro__:
        for name, value in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if not inspect.isfunction(value):
                continue
            found = namespaces.get(id(value.__globals__))
            uses = found[1] & set(value.__code__.co_names) if found is not None else ()
            if uses:
                methods[name] = _remade(value, found[0])
                used.update(uses)
    return methods


def _config_dump_skippable() -> bool:
    """Whether Autobahn's ``_connectionMade`` copies and prints ``CONFIG_ATTRS`` as we expect."""
    made = getattr(_protocol.WebSocketProtocol, "_connectionMade", None)
    if not inspect.isfunction(made):
        return False
    if not {"CONFIG_ATTRS", "factory", "pformat"} <= set(made.__code__.co_names):
        return False
    return all(
        isinstance(getattr(cls, "CONFIG_ATTRS", None), (list, tuple))
        and all(isinstance(name, str) for name in cls.CONFIG_ATTRS)
        for cls in (_protocol.WebSocketServerProtocol, _protocol.WebSocketClientProtocol)
    )


class _SkipConfigDump:
    """Copy the factory's settings ourselves; Autobahn then has none left to pretty-print.

    Around ``makeConnection`` (a method no debug line names), so that every
    other debug line keeps its text.
    """

    def makeConnection(self, transport) -> None:
        factory = self.factory
        for name in self.CONFIG_ATTRS:
            if not hasattr(self, name):  # set on the protocol (class or instance) wins, as in Autobahn
                setattr(self, name, getattr(factory, name))
        self.CONFIG_ATTRS = ()
        try:
            super().makeConnection(transport)
        finally:
            del self.CONFIG_ATTRS


def _lean(base: type, name: str, replacements: dict, skip_config_dump: bool, used: set) -> type:
    remade = type(f"_{name}Methods", (base,), {"__module__": __name__, **_lean_methods(base, replacements, used)})
    bases = (_SkipConfigDump, remade) if skip_config_dump else (remade,)
    doc = f"Autobahn's ``{base.__name__}``, with its debug arguments lazy (see :mod:`{__name__}`)."
    return type(name, bases, {"__module__": __name__, "__doc__": doc})


def _build() -> tuple[frozenset, type, type]:
    """(the speed-ups in force, the lean server protocol, the lean client protocol)."""
    replacements = _replacements()
    skip = _config_dump_skippable()
    used: set = set()
    server = _lean(_twisted_websocket.WebSocketServerProtocol, "LeanServerProtocol", replacements, skip, used)
    client = _lean(_twisted_websocket.WebSocketClientProtocol, "LeanClientProtocol", replacements, skip, used)
    active = {_LABELS[name] for name in used} | ({"no configuration dump"} if skip else set())
    return frozenset(active), server, client


#: The speed-ups in force: "lazy pformat", "lazy hltype/hlval", "small-frame
#: masker", "no configuration dump" (each left out if its check failed).
ACTIVE, LeanServerProtocol, LeanClientProtocol = _build()


# -- one application protocol instance on one of txhyco's connections ----------
#
# An application's Autobahn protocol that txhyco itself builds and connects
# (a RelayedServerFactory's server behind the accept bridge, a
# RelayedClientFactory's client) gets the same speed-ups on that one
# instance: instance attributes, so its class, Autobahn's classes and every
# other instance are untouched. A method the application's class overrides
# keeps the override (the lean one is only Autobahn's own method remade).


def _instance_methods(lean: type, base: type) -> dict:
    """{name: (Autobahn's function as ``base`` resolves it, its lean remake)} from ``lean``'s remade methods."""
    remade = vars(lean.__mro__[-len(base.__mro__) - 1])
    return {name: (getattr(base, name), function) for name, function in remade.items()
            if inspect.isfunction(function) and inspect.isfunction(getattr(base, name, None))}


_INSTANCE_METHODS = (
    (LeanServerProtocol, _twisted_websocket.WebSocketServerProtocol,
     _instance_methods(LeanServerProtocol, _twisted_websocket.WebSocketServerProtocol)),
    (LeanClientProtocol, _twisted_websocket.WebSocketClientProtocol,
     _instance_methods(LeanClientProtocol, _twisted_websocket.WebSocketClientProtocol)),
)


def _skip_config_dump_once(protocol) -> None:
    """Around this instance's ``makeConnection``: what :class:`_SkipConfigDump` does for our classes."""
    make_connection = type(protocol).makeConnection

    def makeConnection(transport) -> None:
        del protocol.makeConnection  # once; the class's method from now on
        factory = protocol.factory
        for name in protocol.CONFIG_ATTRS:
            if not hasattr(protocol, name):
                setattr(protocol, name, getattr(factory, name))
        protocol.CONFIG_ATTRS = ()
        try:
            make_connection(protocol, transport)
        finally:
            del protocol.CONFIG_ATTRS

    protocol.makeConnection = makeConnection


def lean_instance(protocol) -> bool:
    """Give one Autobahn protocol instance (not yet connected) the speed-ups in :data:`ACTIVE`.

    For application protocols on txhyco's own connections only (see above).
    Returns whether anything was applied: nothing is for a protocol that is
    not an Autobahn Twisted WebSocket protocol, or already lean.
    """
    for lean, base, methods in _INSTANCE_METHODS:
        if not isinstance(protocol, base):
            continue
        if isinstance(protocol, lean):
            return False
        klass = type(protocol)
        applied = False
        for name, (autobahns, remade) in methods.items():
            if getattr(klass, name, None) is autobahns and name not in protocol.__dict__:
                setattr(protocol, name, types.MethodType(remade, protocol))
                applied = True
        if "no configuration dump" in ACTIVE and getattr(protocol, "factory", None) is not None:
            _skip_config_dump_once(protocol)
            applied = True
        return applied
    return False
