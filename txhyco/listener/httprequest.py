"""The HTTP/1.1 request an application protocol is fed for a relayed ``request`` command.

The request target is shown relative to the hybrid connection
(``/myhc/index.html`` → ``/index.html``) with the prefix in
``X-Forwarded-Prefix``, so ``twistd web --path DIR`` serves DIR at the hybrid
connection's root; ``X-Forwarded-Proto``, ``-Host`` and ``-For`` say how the
sender reached the relay. The head is written directly while it has the
common shape h11 would write unchanged, and by h11 otherwise.
"""
from __future__ import annotations

import functools

import h11

from txhyco.protocol.addresses import relative_target
from txhyco.protocol.grammar import PLAIN_FIELD_VALUE, PLAIN_TARGET, TOKEN
from txhyco.protocol.messages import Request

# Request headers that describe the sender's connection to the relay, not the request.
_NOT_PASSED_ON = frozenset({"content-length", "transfer-encoding", "connection", "x-forwarded-prefix"})


def synthetic_request_head(request: Request, hc, body: bytes | None) -> bytes:
    """The request head for ``request`` on ``hc``; ``body`` None means the body streams in, chunked.

    Raises ``ProtocolError``, ``h11.LocalProtocolError`` or ``UnicodeError``
    for a request that cannot be written as HTTP/1.1.
    """
    target, headers = synthetic_request_fields(request, hc, body)
    return write_request_head(request.method, target, headers)


def write_request_head(method: str, target: str, headers: list) -> bytes:
    """The HTTP/1.1 request head of these fields; raises ``h11.LocalProtocolError`` or
    ``UnicodeError`` where they cannot be written."""
    head = plain_request_head(method, target, headers)
    if head is None:
        # h11 writes the same bytes, or raises for what cannot be written.
        head = h11.Connection(h11.CLIENT).send(h11.Request(method=method, target=target, headers=headers))
    return head


@functools.lru_cache(maxsize=256)
def _recent_relative_target(target: str, entity_path: str) -> tuple[str, str]:
    return relative_target(target, entity_path)


def _relative_target(target: str, entity_path: str) -> tuple[str, str]:
    """:func:`relative_target`, remembered for the last short targets (a pure function of
    two strings; most requests repeat a few targets, each worked out once)."""
    if len(target) > 256:  # (the cache holds at most 256 of these, 64 KiB of text)
        return relative_target(target, entity_path)
    return _recent_relative_target(target, entity_path)


def synthetic_request_fields(request: Request, hc, body: bytes | None) -> tuple[str, list]:
    """(request target, [(name, value), ...]) of the synthetic request for ``request`` on ``hc``.

    What :func:`synthetic_request_head` writes, unwritten: the twisted.web
    fast path (:mod:`txhyco.listener.siterequest`) hands the same fields to a
    ``Request`` directly. Raises ``ProtocolError`` for a target that cannot be
    made relative to the hybrid connection.
    """
    target, prefix = _relative_target(request.request_target or "/", hc.path)
    headers = []
    host = None
    for name, value in request.request_headers.items():
        lower = name.lower()
        if lower in _NOT_PASSED_ON:
            continue
        if lower == "host":
            host = value
            continue
        headers.append((name, value))
    ns = hc.namespace
    headers.insert(0, ("Host", host or ns.authority))
    headers.append(("X-Forwarded-Prefix", prefix))
    headers.append(("X-Forwarded-Proto", "https" if ns.secure else "http"))
    headers.append(("X-Forwarded-Host", ns.authority))
    if request.remote_endpoint is not None:
        headers.append(("X-Forwarded-For", request.remote_endpoint.address))
    if body is None:
        headers.append(("Transfer-Encoding", "chunked"))
    elif body or request.body:
        headers.append(("Content-Length", str(len(body))))
    return target, headers


def plain_request_head(method: str, target: str, headers: list) -> bytes | None:
    """The request head h11 would write, or None where h11 must judge."""
    # What h11 would accept as is (ASCII only: h11 encodes str as ASCII);
    # anything else goes through h11 itself, which then raises exactly as it
    # always did.
    if not (TOKEN.fullmatch(method) and PLAIN_TARGET.fullmatch(target)):
        return None
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if not TOKEN.fullmatch(name) or (value and not PLAIN_FIELD_VALUE.fullmatch(value)):
            return None
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("ascii")
