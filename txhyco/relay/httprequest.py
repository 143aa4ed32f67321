"""A sender's HTTP request head at the relay: read, checked, and routed to a listener.

:func:`open_exchange` turns a request head (as h11 reads it) into a
:class:`~txhyco.relay.http.RelayedHttpExchange` bound for a listener, or
says in a :class:`RequestRefused` why the relay answers the request itself
(a bad target, a request smuggling shape, an unknown hybrid connection, a
token refused, no listener that can take it).
"""
from __future__ import annotations

import functools

from txhyco.protocol.addresses import RelayTarget, parse_relay_target
from txhyco.protocol.errors import ProtocolError, RemoteProtocolError
from txhyco.protocol.grammar import field_text
from txhyco.protocol.http import request_headers_for_listener
from txhyco.protocol.messages import Headers
from txhyco.protocol.sas import Rights

from .auth import find_token, host_only
from .faults import HTTP
from .http import RelayedHttpExchange
from .routing import choose_listener

# Headers that instruct the relay and are not forwarded to the listener.
_RELAY_HEADERS = frozenset({"microsoft-relay-allowedlisteners", "microsoft-relay-disallowedlisteners"})

# h11 header names (lower case) that open_exchange looks at or holds back.
_RELAY_HEADERS_RAW = frozenset(n.encode("ascii") for n in _RELAY_HEADERS)
_WATCHED = frozenset({b"host", b"content-length", b"transfer-encoding", b"upgrade"}) | _RELAY_HEADERS_RAW

# Parsed request targets, by raw target: a keep-alive sender (or many) asks
# for the same few paths, and parse_relay_target is pure. Long targets are
# parsed each time rather than kept.
_TARGET_CACHEABLE = 2048


@functools.lru_cache(maxsize=512)
def _cached_relay_target(raw: bytes) -> RelayTarget:
    return parse_relay_target(raw.decode("ascii"))  # h11 admits only visible ASCII


def _relay_target(raw: bytes) -> RelayTarget:
    if len(raw) <= _TARGET_CACHEABLE:
        return _cached_relay_target(raw)
    return parse_relay_target(raw.decode("ascii"))


class _HeadFacts:
    """What the relay takes from a request's header pairs (:func:`_head_facts`)."""

    __slots__ = ("forward", "lower", "host", "upgrade", "content_length", "transfer_encoding", "_for_listener")

    def __init__(self, raw_headers) -> None:
        # One pass over h11's headers collects all the request needs: the
        # pairs to forward (validated again by request_headers_for_listener,
        # which is stricter than h11 about control characters), a lower-case
        # map, and the few names the relay itself looks at.
        forward = []
        lower = {}
        watched = {}  # the first value of each name in _WATCHED
        for raw_name, value in raw_headers:
            lname = raw_name.lower()
            text = field_text(value)
            name = raw_name.decode("ascii")
            lower[name.lower()] = text
            if lname in _WATCHED:
                if lname in _RELAY_HEADERS_RAW:
                    continue  # a relay instruction: not forwarded
                watched.setdefault(lname, value)
            forward.append((name, text))
        host_raw = watched.get(b"host")
        self.forward = forward
        #: the headers' text by lower-case name (read, never changed)
        self.lower = lower
        self.host = host_only(host_raw.decode("latin-1")) if host_raw else ""
        self.upgrade = watched.get(b"upgrade")
        self.content_length = watched.get(b"content-length")
        self.transfer_encoding = watched.get(b"transfer-encoding")
        self._for_listener: dict[bool, Headers] = {}

    def for_listener(self, consume_authorization: bool) -> Headers:
        """The ``requestHeaders`` for the listener (Via naming the Host, or "relay"); ProtocolError if unfit."""
        headers = self._for_listener.get(consume_authorization)
        if headers is None:
            headers = self._for_listener[consume_authorization] = request_headers_for_listener(
                self.forward, via="1.1 " + (self.host or "relay"), consume_authorization=consume_authorization
            )
        return headers


# The facts of header pairs seen lately (a plain request's, a tuple shared
# by every request with the same head: txhyco.relay.plainhttp), reused while
# a keep-alive sender (or many) sends the same head again. Bounded.
_FACTS_LIMIT = 64
_facts: dict[tuple, _HeadFacts] = {}


def _head_facts(raw_headers) -> _HeadFacts:
    if raw_headers.__class__ is not tuple:
        return _HeadFacts(raw_headers)
    facts = _facts.get(raw_headers)
    if facts is None:
        if len(_facts) >= _FACTS_LIMIT:
            _facts.clear()
        facts = _facts[raw_headers] = _HeadFacts(raw_headers)
    return facts


class RequestRefused(Exception):
    """The relay answers a request itself, with ``status`` and ``message``.

    ``host`` and ``path`` shape the Azure-style reason phrase;
    ``close_connection``: the request is unsafe to read past, so the
    connection ends after the answer.
    """

    def __init__(self, error: ProtocolError, *, host: str, path: str, close_connection: bool) -> None:
        super().__init__(error.message)
        self.status = error.status
        self.message = error.message
        self.host = host
        self.path = path
        self.close_connection = close_connection


def open_exchange(sender, method: bytes, request_target: bytes, raw_headers) -> RelayedHttpExchange:
    """The exchange that carries a request, from ``sender`` (an HttpSender), to a listener.

    ``method``, ``request_target`` and ``raw_headers`` (its (name, value)
    byte pairs) are as h11 reads them (an h11 ``Request``, or a
    :class:`~txhyco.relay.plainhttp.PlainRequest`). Not started yet.
    Raises :class:`RequestRefused` when no listener is to see the request.
    """
    facts = _head_facts(raw_headers)
    lower = facts.lower
    upgrade = facts.upgrade
    content_length = facts.content_length
    transfer_encoding = facts.transfer_encoding
    host = facts.host
    path = ""
    close_connection = False
    relay = sender.relay
    try:
        target = _relay_target(request_target)
        path = target.path
        if target.hybrid:
            raise RemoteProtocolError("/$hc/ addresses take WebSocket upgrades; send HTTP requests to /{hybrid connection}/...", 400)
        if method == b"CONNECT" or upgrade:
            raise RemoteProtocolError("The relay does not relay CONNECT or protocol upgrades over HTTP.", 405)
        if content_length is not None and transfer_encoding is not None:
            # Two framings for one body: a classic request-smuggling shape
            # (RFC 9112 §6.3). Refused, and the connection closed after.
            close_connection = True
            raise RemoteProtocolError("A request may not carry both Content-Length and Transfer-Encoding.", 400)
        entity, _ = relay.registry.resolve(target.path)
        if entity is None:
            raise RemoteProtocolError("Endpoint does not exist.", 404)
        auth_required = entity.config.requires_client_authorization
        consume = auth_required and not lower.get("servicebusauthorization") and not target.token
        if auth_required:
            token = find_token(lower, target.token, http=True, consume_authorization=True)
            relay.tokens.check(entity, token, host=host, required=Rights.SEND, now=relay.now())
        listener = choose_listener(relay.registry, entity, lower, no_listener_status=relay.config.limits.no_listener_status)
        if relay.faults:
            relay.faults.refuse_if_armed(entity.name, HTTP)
        via_host = host or "relay"
        headers = facts.for_listener(consume)
    except ProtocolError as e:
        raise RequestRefused(e, host=host, path=path, close_connection=close_connection) from None
    request_target = target.raw_path + ("?" + target.app_query if target.app_query else "")
    if content_length is not None:
        length = int(content_length)
    else:
        length = None if transfer_encoding is not None and b"chunked" in transfer_encoding.lower() else 0
    return RelayedHttpExchange(
        relay,
        sender,
        entity,
        listener,
        method=method.decode("ascii"),
        request_target=request_target,
        headers=headers,
        remote=sender.remote,
        content_length=length,
        via_host=via_host,
    )
