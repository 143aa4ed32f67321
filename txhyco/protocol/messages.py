"""Control-channel commands (Hybrid Connections protocol, "Listener protocol") as typed
immutable values.

Every command is one WebSocket text message holding a JSON object with one
top-level member: ``accept``, ``request``, ``response`` or ``renewToken``
(Hybrid Connections protocol, "Listener protocol").  :func:`parse_command` turns such a
message into a value and :func:`serialize_command` turns a value back into the exact
JSON the official clients expect.  Both sides of the protocol (relay and listener) use
these.

Parsing is tolerant where official clients differ (Azure/azure-relay-dotnet,
azure-relay-node and azure-relay-java): any member order, ``\\/`` escapes, unknown
members, missing optional members, ``statusCode``/``port`` as numbers or numeric
strings, non-string header values (Node).  It is strict where lenience would be
dangerous: header names must be RFC 7230 tokens and no value may carry CR, LF or other
control characters, so nothing parsed here can smuggle a header or a request line
downstream.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .grammar import FORBIDDEN_IN_TARGET, FORBIDDEN_IN_VALUE, TOKEN

__all__ = [
    "MAX_COMMAND_SIZE",
    "Headers",
    "RemoteEndpoint",
    "Accept",
    "Request",
    "Response",
    "RenewToken",
    "Command",
    "parse_command",
    "serialize_command",
    "serialize_request",
]

#: Largest JSON command, in UTF-8 bytes, either side may send or accept:
#: .NET reads commands into a 64 KiB buffer, Java caps text messages at 64 KiB.
MAX_COMMAND_SIZE = 65536

_OWS = " \t"


def _short(value: object, limit: int = 60) -> str:
    """A repr of peer input that is safe to put in an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_value_to_str(value: Any, what: str) -> str:
    """Stringify a header value the way a relay must tolerate from Node
    (Azure/azure-relay-node).

    Node's ``setHeader`` passes through whatever the application gave it:
    numbers become their decimal text (``str(int)`` for integral numbers, as
    JavaScript prints them), booleans ``"true"``/``"false"``, ``null`` the
    empty string, and arrays the ``", "``-join of their non-empty stringified
    elements (the multi-value convention of RFC 9110 §5.3; Node itself would keep only
    the first element).  Objects have no sensible header form and are rejected,
    as are arrays inside arrays (flattening them recursed once per level: a
    64 KiB command nests deep enough to exhaust Python's stack).
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise LocalProtocolError(f"Header {what} has a non-finite number as its value.")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        if any(isinstance(item, (list, tuple)) for item in value):
            raise LocalProtocolError(f"Header {what} has an array inside an array as its value.")
        parts = (_json_value_to_str(item, what) for item in value)
        return ", ".join(part for part in parts if part)
    raise LocalProtocolError(
        f"Header {what} has a value of type {type(value).__name__}; "
        "header values must be strings (or numbers, booleans, null, arrays)."
    )


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise LocalProtocolError(f"Header name {_short(name)} is not a string.")
    if not TOKEN.fullmatch(name):
        raise LocalProtocolError(
            f"Header name {_short(name)} is not a valid RFC 7230 token "
            "(empty, or holds whitespace, ':', CR/LF or other separators)."
        )
    return name


def _check_value(name: str, value: str) -> str:
    if FORBIDDEN_IN_VALUE.search(value):
        raise LocalProtocolError(
            f"Header {name!r} has a value holding CR, LF, NUL or another control "
            "character; refusing it (header smuggling)."
        )
    return value.strip(_OWS)


_DICT_ITEMS = type({}.items())


class Headers(Mapping[str, str]):
    """Immutable, hashable header map keeping the names' original case and order.

    Lookups (``[]``, ``get``, ``in``) ignore case, as HTTP does; iteration and
    :meth:`items` give the original names, because Java looks up
    ``Sec-WebSocket-Protocol`` case-sensitively (Azure/azure-relay-java).  Names repeated in any
    case are joined into one value with ``", "`` under the first-seen name
    (the multi-value convention of RFC 9110 §5.3; empty values add nothing).  Values
    are stripped of surrounding spaces/tabs (h11 refuses them).  Equality compares the maps of original names to values,
    ignoring order.

    Construction validates everything: names must be RFC 7230 tokens and
    values may not contain CR, LF, NUL or other control characters, otherwise
    :class:`ProtocolError` is raised.  Non-string values are stringified as in
    :func:`_json_value_to_str` (numbers, booleans, null, arrays).
    """

    __slots__ = ("_items", "_index", "_hash")

    def __init__(self, pairs: Iterable[tuple[str, Any]] | Mapping[str, Any] = ()) -> None:
        kind = pairs.__class__
        if kind is list or kind is tuple or kind is _DICT_ITEMS:
            pass  # the common cases, without ABC instance checks
        elif kind is dict:
            pairs = pairs.items()
        elif isinstance(pairs, Headers):
            self._items, self._index, self._hash = pairs._items, pairs._index, pairs._hash
            return
        elif isinstance(pairs, Mapping):
            pairs = pairs.items()
        names: list[str] = []
        values: list[str] = []
        index: dict[str, int] = {}
        try:
            iterator = iter(pairs)
        except TypeError:
            raise LocalProtocolError("Headers must be a mapping or (name, value) pairs.") from None
        token = TOKEN.fullmatch
        bad = FORBIDDEN_IN_VALUE.search
        for pair in iterator:
            if (pair.__class__ is not tuple and not isinstance(pair, (tuple, list))) or len(pair) != 2:
                raise LocalProtocolError(f"Header entry {_short(pair)} is not a (name, value) pair.")
            name, value = pair
            # The common case (str name and value, nothing wrong) inline;
            # anything else goes through the checks that raise.
            if name.__class__ is not str or token(name) is None:
                name = _check_name(name)
            if value.__class__ is not str:
                value = _json_value_to_str(value, repr(name))
            if bad(value) is not None:
                _check_value(name, value)
            value = value.strip(_OWS)
            key = name.lower()
            position = index.get(key)
            if position is None:
                index[key] = len(names)
                names.append(name)
                values.append(value)
            else:
                previous = values[position]
                if value:
                    values[position] = f"{previous}, {value}" if previous else value
        self._items: tuple[tuple[str, str], ...] = tuple(zip(names, values))
        self._index = index
        self._hash: int | None = None

    @classmethod
    def _trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Headers from pairs this package already validated, merged and stripped.

        For the hot path (a relayed request builds its ``requestHeaders``
        once, not three times): the caller guarantees every name is a token,
        no value holds a control character or surrounding spaces, and no
        name repeats in any case.  Never use it for peer input.
        """
        self = object.__new__(cls)
        items = tuple(items)
        self._items = items
        self._index = {name.lower(): position for position, (name, _) in enumerate(items)}
        self._hash = None
        return self

    @classmethod
    def from_mapping(cls, obj: Any) -> Headers:
        """Headers from a decoded JSON object (``connectHeaders`` & co;
        Hybrid Connections protocol, "Listener protocol")."""
        if obj.__class__ is dict:
            return cls(obj.items())
        if isinstance(obj, Headers):
            return obj
        if not isinstance(obj, Mapping):
            raise LocalProtocolError(
                f"A header map must be a JSON object, not {type(obj).__name__}."
            )
        return cls(obj.items())

    def __getitem__(self, name: str) -> str:
        if isinstance(name, str):
            position = self._index.get(name.lower())
            if position is not None:
                return self._items[position][1]
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        if isinstance(name, str):
            position = self._index.get(name.lower())
            if position is not None:
                return self._items[position][1]
        return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> tuple[tuple[str, str], ...]:  # type: ignore[override]
        """The (original name, value) pairs in order."""
        return self._items

    def to_dict(self) -> dict[str, str]:
        """A plain dict of original names to values, in order (for JSON)."""
        return dict(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            if self is other:
                return True
            return len(self._items) == len(other._items) and dict(self._items) == dict(other._items)
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items))
        return self._hash

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


_EMPTY_HEADERS = Headers()


def _check_text(value: str, what: str) -> str:
    if FORBIDDEN_IN_VALUE.search(value):
        raise LocalProtocolError(f"{what} holds CR, LF or another control character.")
    return value


def _coerce_headers(value_object: object, field_name: str) -> None:
    """Let code pass a dict or pairs where a :class:`Headers` is expected."""
    value = getattr(value_object, field_name)
    if value.__class__ is not Headers and not isinstance(value, Headers):
        object.__setattr__(value_object, field_name, Headers(value))


@dataclass(frozen=True)
class RemoteEndpoint:
    """The sender's IP address and port as the relay saw them (``remoteEndpoint``, which
    .NET and Java read)."""

    address: str
    port: int


@dataclass(frozen=True)
class Accept:
    """``accept`` (service → listener; Hybrid Connections protocol, "Accept handshake"):
    a WebSocket sender waits.

    The listener answers by opening ``address`` (accept) or ``address`` plus
    ``&sb-hc-statusCode=…`` (reject); there is no reply message.
    """

    address: str
    id: str
    connect_headers: Headers
    remote_endpoint: RemoteEndpoint | None = None

    def __post_init__(self) -> None:
        _coerce_headers(self, "connect_headers")


@dataclass(frozen=True)
class Request:
    """``request`` (service → listener; Hybrid Connections protocol, "Request message"),
    full or address-only form.

    Address-only (``method`` and ``body`` both absent; Hybrid Connections protocol,
    "Request message") means: open a rendezvous to ``address`` and read the full request
    there.  Otherwise ``request_target`` must start with ``/`` (.NET resolves it against
    the listener URI) and ``method`` must be a token; a full form without
    ``body`` (Node's criterion is ``method``) is normalised to ``body=False``.
    """

    address: str
    id: str
    request_target: str | None = None
    method: str | None = None
    request_headers: Headers = _EMPTY_HEADERS
    body: bool | None = None
    remote_endpoint: RemoteEndpoint | None = None

    def __post_init__(self) -> None:
        _coerce_headers(self, "request_headers")
        target = self.request_target
        if target is not None:
            if not isinstance(target, str) or not target.startswith("/"):
                raise LocalProtocolError(
                    f"The requestTarget must start with '/', got {_short(target)}."
                )
            if FORBIDDEN_IN_TARGET.search(target):
                raise LocalProtocolError(
                    "The requestTarget holds whitespace or control characters; refusing it."
                )
        if self.method is None and self.body is None:
            return
        if not isinstance(self.method, str) or not TOKEN.fullmatch(self.method):
            raise LocalProtocolError(
                f"A full request needs a method that is an HTTP token, got {_short(self.method)}."
            )
        if target is None:
            raise LocalProtocolError("A full request needs a requestTarget.")
        if self.body is None:
            object.__setattr__(self, "body", False)

    @property
    def address_only(self) -> bool:
        """True for the form that says "come and get it on a rendezvous"
        (Hybrid Connections protocol, "Request message")."""
        return self.method is None and self.body is None


@dataclass(frozen=True)
class Response:
    """``response`` (listener → service; Hybrid Connections protocol,
    "Responding to requests").

    ``status_description`` is stored with control characters (CR/LF…) removed,
    so it can never break a status line (RFC 9112 §4); ``None`` and ``""`` are kept
    apart (the relay substitutes the standard phrase for both).
    """

    request_id: str
    status_code: int
    status_description: str | None = None
    response_headers: Headers = _EMPTY_HEADERS
    body: bool = False

    def __post_init__(self) -> None:
        _coerce_headers(self, "response_headers")
        code = self.status_code
        if type(code) is not int:
            raise LocalProtocolError(f"statusCode must be an integer from 100 to 999, got {_short(code)}.")
        text = _response_status(code, self.status_description, LocalProtocolError)
        if text is not self.status_description:
            object.__setattr__(self, "status_description", text)


def _response_status(code: int, description: str | None, error: type) -> str | None:
    """A response's description without control characters, once its integer status code is
    known to be from 100 to 999 (else ``error``: local for one we make, remote for one we read)."""
    if not 100 <= code <= 999:
        raise error(f"statusCode must be an integer from 100 to 999, got {_short(code)}.")
    if description is not None and FORBIDDEN_IN_VALUE.search(description):
        return FORBIDDEN_IN_VALUE.sub("", description)
    return description


@dataclass(frozen=True)
class RenewToken:
    """``renewToken`` (listener → service; Hybrid Connections protocol,
    "Listener token renewal"): replaces the channel's token."""

    token: str

    def __repr__(self) -> str:
        return "RenewToken(token=<redacted>)"


Command = Union[Accept, Request, Response, RenewToken]

# --------------------------------------------------------------------------
# parsing


def _reject_constant(name: str) -> Any:
    raise RemoteProtocolError(f"The command holds {name}, which is not valid JSON.")


# One decoder and one encoder for every command: ``json.loads``/``json.dumps``
# with options build a new (de|en)coder object per call.
_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
#: a JSON string literal, non-ASCII escaped (what ``_ENCODE`` writes for a str)
_QUOTE = json.encoder.encode_basestring_ascii


def _required_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        if value is None:
            raise RemoteProtocolError(f"The {where} command lacks the required string member {key!r}.")
        raise RemoteProtocolError(
            f"The {where} command's member {key!r} must be a string, not {type(value).__name__}."
        )
    return _check_text(value, f"The {where} command's {key!r}")


def _optional_headers(obj: Mapping[str, Any], key: str) -> Headers:
    value = obj.get(key)
    if value is None:
        return _EMPTY_HEADERS
    seen = _seen_headers(value)
    if seen is not None:
        return seen
    try:
        headers = Headers.from_mapping(value)
    except ProtocolError as exc:
        raise RemoteProtocolError(f"In {key!r}: {exc.message}") from None
    _remember_headers(value, headers)
    return headers


# Header objects of recent commands, by their (name, value) pairs, and the
# Headers they made. A peer sends the same headers command after command (a
# listener's responses differ in their Date at most), and Headers are
# immutable: the same pairs make an equal object, so it is reused rather
# than checked and built again. Only all-string values are remembered (1,
# 1.0 and true are equal as keys but not as header values). Bounded: at most
# _SEEN_LIMIT objects of commands of at most MAX_COMMAND_SIZE bytes.
_SEEN_LIMIT = 64
_seen: dict[tuple, Headers] = {}


def _seen_headers(value: Any) -> Headers | None:
    if value.__class__ is not dict or not _seen:
        return None
    try:
        return _seen.get(tuple(value.items()))
    except TypeError:  # an array or object value: never remembered
        return None


def _remember_headers(value: Any, headers: Headers) -> None:
    if value.__class__ is not dict:
        return
    for item in value.values():
        if item.__class__ is not str:
            return
    if len(_seen) >= _SEEN_LIMIT:
        _seen.clear()
    _seen[tuple(value.items())] = headers


def _parse_int(value: Any, what: str) -> int:
    """An integer sent as a JSON number or as a string of digits
    (Hybrid Connections protocol, "Responding to requests")."""
    if isinstance(value, bool):
        raise RemoteProtocolError(f"{what} must be a number, not a boolean.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 10:
            return int(text)
    raise RemoteProtocolError(f"{what} must be an integer or a string of digits, got {_short(value)}.")


def _optional_endpoint(obj: Mapping[str, Any]) -> RemoteEndpoint | None:
    value = obj.get("remoteEndpoint")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RemoteProtocolError("'remoteEndpoint' must be a JSON object with address and port.")
    address = value.get("address")
    if not isinstance(address, str):
        raise RemoteProtocolError("'remoteEndpoint' lacks a string 'address'.")
    _check_text(address, "remoteEndpoint's address")
    port = _parse_int(value.get("port"), "remoteEndpoint's port")
    if not 0 <= port <= 65535:
        raise RemoteProtocolError(f"remoteEndpoint's port {port} is outside 0-65535.")
    return RemoteEndpoint(address, port)


def _optional_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise RemoteProtocolError(f"The {where} command's {key!r} must be true or false, got {_short(value)}.")


def _parse_accept(obj: dict[str, Any]) -> Accept:
    return Accept(
        address=_required_str(obj, "address", "accept"),
        id=_required_str(obj, "id", "accept"),
        connect_headers=_optional_headers(obj, "connectHeaders"),
        remote_endpoint=_optional_endpoint(obj),
    )


def _parse_request(obj: dict[str, Any]) -> Request:
    target = obj.get("requestTarget")
    if target is not None and not isinstance(target, str):
        raise RemoteProtocolError("The request command's 'requestTarget' must be a string.")
    method = obj.get("method")
    if method is not None and not isinstance(method, str):
        raise RemoteProtocolError("The request command's 'method' must be a string.")
    return Request(
        address=_required_str(obj, "address", "request"),
        id=_required_str(obj, "id", "request"),
        request_target=target,
        method=method,
        request_headers=_optional_headers(obj, "requestHeaders"),
        body=_optional_bool(obj, "body", "request"),
        remote_endpoint=_optional_endpoint(obj),
    )


def _parse_response(obj: dict[str, Any]) -> Response:
    if "statusCode" not in obj:
        raise RemoteProtocolError("The response command lacks the required member 'statusCode'.")
    description = obj.get("statusDescription")
    if description is not None and not isinstance(description, str):
        raise RemoteProtocolError("The response command's 'statusDescription' must be a string.")
    request_id = _required_str(obj, "requestId", "response")
    status = _parse_int(obj["statusCode"], "The response command's 'statusCode'")
    headers = _optional_headers(obj, "responseHeaders")
    body = bool(_optional_bool(obj, "body", "response"))
    # Response.__post_init__'s checks, here where the values are known to
    # be of their types: then the object is made without the dataclass's
    # __init__ (a relay parses one response per relayed request).
    description = _response_status(status, description, RemoteProtocolError)
    response = object.__new__(Response)
    response.__dict__.update(
        request_id=request_id, status_code=status, status_description=description, response_headers=headers, body=body
    )
    return response


def _parse_renew(obj: dict[str, Any]) -> RenewToken:
    token = obj.get("token")
    if not isinstance(token, str):
        raise RemoteProtocolError("The renewToken command lacks a string 'token'.")
    return RenewToken(token)


_PARSERS = {
    "accept": _parse_accept,
    "request": _parse_request,
    "response": _parse_response,
    "renewToken": _parse_renew,
}


# The decoder's scanner: one call reads a whole JSON value.
_SCAN = _DECODE.__self__.scan_once


def _whole_object(text: str) -> Any:
    """``text`` decoded in one call of the decoder's scanner when it is a JSON object
    and nothing else (the usual command), else None: the decoder then reads it
    (whitespace around it, an error to report) as ``json.loads`` would."""
    if text[:1] != "{":
        return None
    try:
        obj, end = _SCAN(text, 0)
    except ProtocolError:
        raise
    except (StopIteration, ValueError, RecursionError):
        return None
    return obj if end == len(text) else None


def parse_command(data: str | bytes) -> Command:
    """Parse one control-channel text message into a command
    (Hybrid Connections protocol, "Listener protocol").

    Unknown top-level members next to exactly one known one are ignored (as
    .NET does), as are unknown members inside a command.  Raises
    :class:`RemoteProtocolError` (the command came from a peer) for anything else: not UTF-8, over
    :data:`MAX_COMMAND_SIZE` bytes, not JSON, not an object, no or several
    known members, wrong member types, invalid values.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_COMMAND_SIZE:
            raise RemoteProtocolError(f"The command is {len(data)} bytes; the limit is {MAX_COMMAND_SIZE}.")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("The command is not valid UTF-8.") from None
    elif isinstance(data, str):
        text = data
        if len(text) * 4 > MAX_COMMAND_SIZE:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise RemoteProtocolError("The command holds characters that are not valid Unicode.") from None
            if size > MAX_COMMAND_SIZE:
                raise RemoteProtocolError(f"The command is {size} bytes; the limit is {MAX_COMMAND_SIZE}.")
    else:
        raise LocalProtocolError(f"A command must be text or bytes, not {type(data).__name__}.")
    obj = _whole_object(text)
    if obj is None:
        try:
            obj = _DECODE(text)
        except ProtocolError:
            raise
        except (ValueError, RecursionError) as exc:
            raise RemoteProtocolError(f"The command is not valid JSON ({exc.__class__.__name__}: {_short(str(exc), 80)}).") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"A command must be a JSON object, not {type(obj).__name__}.")
    known = [key for key in obj if key in _PARSERS]
    if len(known) != 1:
        if not known:
            raise RemoteProtocolError(
                "The command has none of the members accept, request, response, renewToken "
                f"(members: {_short(sorted(obj))})."
            )
        raise RemoteProtocolError(f"The command has several command members {known}; exactly one is allowed.")
    key = known[0]
    body = obj[key]
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"The {key!r} member must be a JSON object, not {type(body).__name__}.")
    try:
        return _PARSERS[key](body)
    except LocalProtocolError as exc:  # a value the commands' own checks refuse, sent by a peer
        raise RemoteProtocolError(exc.message, exc.status) from None


# --------------------------------------------------------------------------
# serialising


def _endpoint_json(endpoint: RemoteEndpoint) -> dict[str, Any]:
    return {"address": endpoint.address, "port": endpoint.port}



def serialize_request(
    address: str,
    id: str,
    *,
    request_target: str | None,
    method: str | None,
    request_headers: Headers,
    body: bool | None,
    remote_endpoint: RemoteEndpoint | None,
) -> str:
    """What :func:`serialize_command` writes for ``Request(address, id, ...)``, without the object.

    For the relay's hot path, which has the values at hand and checked
    (a :class:`Request` would check them again): ``request_headers`` must be
    :class:`Headers`. Written member by member (a few times faster than
    encoding a dict of the same members), in the order and with the escapes
    of the generic encoder: ``tests/test_messages.py`` compares the two.
    """
    full = method is not None or body is not None
    if not (address.__class__ is str and id.__class__ is str and request_target.__class__ in (str, type(None))
            and method.__class__ in (str, type(None))):
        return _request_by_dict(address, id, request_target, method, request_headers, body, remote_endpoint, full)
    q = _QUOTE
    parts = ['{"request":{"address":', q(address), ',"id":', q(id)]
    if request_target is not None:
        parts += (',"requestTarget":', q(request_target))
    if full:
        parts += (',"method":', q(method))
    if remote_endpoint is not None:
        host, port = remote_endpoint.address, remote_endpoint.port
        parts += (',"remoteEndpoint":{"address":', q(host) if host.__class__ is str else _ENCODE(host), ',"port":',
                  str(port) if port.__class__ is int else _ENCODE(port), "}")
    if full or request_headers:
        parts += (',"requestHeaders":{', ",".join([f"{q(n)}:{q(v)}" for n, v in request_headers.items()]), "}")
    if full:
        parts.append(',"body":true}}' if body else ',"body":false}}')
    else:
        parts.append("}}")
    return _request_size_checked("".join(parts))


def _request_by_dict(address, id, request_target, method, request_headers, body, remote_endpoint, full) -> str:
    """A request command as the generic encoder writes it (:func:`serialize_command`'s, and
    :func:`serialize_request`'s for values of unusual types, say an id that is not a string)."""
    inner: dict[str, Any] = {"address": address, "id": id}
    if request_target is not None:
        inner["requestTarget"] = request_target
    if full:
        inner["method"] = method
    if remote_endpoint is not None:
        inner["remoteEndpoint"] = _endpoint_json(remote_endpoint)
    if full or request_headers:
        inner["requestHeaders"] = request_headers.to_dict()
    if full:
        inner["body"] = bool(body)
    return _request_size_checked(_ENCODE({"request": inner}))


def _request_size_checked(text: str) -> str:
    if len(text) > MAX_COMMAND_SIZE:
        raise LocalProtocolError(
            f"The request command would be {len(text)} bytes of JSON; the limit is {MAX_COMMAND_SIZE}.", status=431
        )
    return text


def serialize_command(cmd: Command) -> str:
    """The compact JSON text message for ``cmd``, member names as in
    Hybrid Connections protocol, "Listener protocol".

    A full ``request`` always carries ``requestTarget``, ``method``,
    ``requestHeaders`` and ``body`` (every client detects the form
    differently; Hybrid Connections protocol, "Request message"); an address-only one carries
    ``address`` and ``id`` (plus ``requestTarget``, ``remoteEndpoint`` and ``requestHeaders``
    when set, which no client uses to tell the forms apart).  Output is ASCII (non-ASCII
    escaped), so its length in characters is its size in bytes.  Raises
    :class:`ProtocolError` if the result would exceed :data:`MAX_COMMAND_SIZE`
    — no official client can read a larger command.
    """
    if isinstance(cmd, Accept):
        inner: dict[str, Any] = {
            "address": cmd.address,
            "id": cmd.id,
            "connectHeaders": cmd.connect_headers.to_dict(),
        }
        if cmd.remote_endpoint is not None:
            inner["remoteEndpoint"] = _endpoint_json(cmd.remote_endpoint)
        message: dict[str, Any] = {"accept": inner}
    elif isinstance(cmd, Request):
        return _request_by_dict(cmd.address, cmd.id, cmd.request_target, cmd.method, cmd.request_headers, cmd.body,
                                cmd.remote_endpoint, not cmd.address_only)
    elif isinstance(cmd, Response):
        if (cmd.body.__class__ is bool and cmd.request_id.__class__ is str
                and (cmd.status_description is None or cmd.status_description.__class__ is str)):
            return _response_text(cmd)
        inner = {"requestId": cmd.request_id, "statusCode": cmd.status_code}
        if cmd.status_description is not None:
            inner["statusDescription"] = cmd.status_description
        inner["responseHeaders"] = cmd.response_headers.to_dict()
        inner["body"] = cmd.body
        message = {"response": inner}
    elif isinstance(cmd, RenewToken):
        message = {"renewToken": {"token": cmd.token}}
    else:
        raise LocalProtocolError(f"Cannot serialise {type(cmd).__name__}: not a command.")
    text = _ENCODE(message)
    if len(text) > MAX_COMMAND_SIZE:
        raise LocalProtocolError(
            f"The {next(iter(message))} command would be {len(text)} bytes of JSON; "
            f"the limit is {MAX_COMMAND_SIZE}.",
            status=431 if isinstance(cmd, Request) else 400,
        )
    return text


def _response_text(cmd: Response) -> str:
    """:func:`serialize_command`'s text for a ``response`` (``body`` a bool), written directly.

    The same characters the encoder writes for the same members (a listener
    sends one per relayed request; the encoder's generic walk cost about as
    much as the rest of the answer's bookkeeping). Headers are validated
    strings, unique in any case, so the object has each name once.
    """
    quote = _QUOTE
    description = cmd.status_description
    text = "".join((
        '{"response":{"requestId":', quote(cmd.request_id),
        ',"statusCode":', str(cmd.status_code),
        "" if description is None else ',"statusDescription":' + quote(description),
        ',"responseHeaders":{', ",".join([quote(name) + ":" + quote(value) for name, value in cmd.response_headers.items()]),
        '},"body":true}}' if cmd.body else '},"body":false}}',
    ))
    if len(text) > MAX_COMMAND_SIZE:
        raise LocalProtocolError(
            f"The response command would be {len(text)} bytes of JSON; the limit is {MAX_COMMAND_SIZE}.", status=400)
    return text
