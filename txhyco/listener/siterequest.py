"""twisted.web's fast path: a relayed request handed to a ``Site``'s ``Request`` without HTTP/1.1 bytes.

On the byte path (:mod:`txhyco.listener.http`) the listener writes the
synthetic request head (:mod:`txhyco.listener.httprequest`) and the
application's protocol parses it again. When that protocol is twisted.web's
own ``HTTPChannel`` (what a ``Site`` builds) and the request arrived in full,
:func:`serve_directly` gives the channel's ``Request`` the same method,
target, header fields and body through the calls the channel's parser would
make (``Request.requestHeaders.addRawHeader``, ``parseCookies``,
``gotLength``, ``handleContentChunk``, ``requestReceived``). The answer is
read back from the bytes the request writes, as on the byte path.

The channel gets no idle timer: the request is complete before the channel
could idle, and on the byte path that timer is stopped in the same call that
starts it (the channel's timer is off while it answers, and the connection
ends with the answer).

Everything else keeps the byte path, so that what the application sees and
what is refused stay as they were: another factory; a protocol or request
factory that is not twisted.web's ``HTTPChannel`` and a ``Request`` (sub)class;
a Twisted whose ``Site`` wraps its channel otherwise than this module expects
(:data:`AVAILABLE`); a body that streams in (address-only requests); and a
head that is not of the common shape or that the channel would refuse (too
many header fields or too long a head: its 400 is the byte path's).
"""
from __future__ import annotations

from twisted.web import http
from twisted.web.iweb import INonQueuedRequestFactory

from txhyco.protocol.grammar import PLAIN_FIELD_VALUE, PLAIN_TARGET, TOKEN

#: Whether relayed requests to a twisted.web channel take this path (tests
#: run the HTTP suite with it off as well: both paths must behave the same).
ENABLED = True

_VERSION = b"HTTP/1.1"


def _channel_wrapper():
    """The class a ``Site`` wraps its ``HTTPChannel`` in (``_channel`` holds it), or None if it is not there."""
    wrapper = getattr(http, "_GenericHTTPChannelProtocol", None)
    if not isinstance(wrapper, type):
        return None
    for name in ("maxHeaders", "totalHeadersSize", "MAX_LENGTH", "requestFactory", "checkPersistence"):
        if not hasattr(http.HTTPChannel, name):
            return None
    return wrapper


_WRAPPER = _channel_wrapper()

#: Whether this Twisted has what the fast path relies on (else the byte path serves every request).
AVAILABLE = _WRAPPER is not None


def site_channel(app):
    """The ``HTTPChannel`` behind ``app`` (a protocol from a factory) if it can be served directly, else None."""
    if not ENABLED or _WRAPPER is None:
        return None
    channel = app.__dict__.get("_channel") if type(app) is _WRAPPER else app
    if type(channel) is not http.HTTPChannel or not isinstance(channel.__dict__.get("requests"), list):
        return None
    factory = channel.requestFactory
    if not (isinstance(factory, type) and issubclass(factory, http.Request)):
        return None
    return channel


def direct_fields(channel, method: str, target: str, headers: list) -> list | None:
    """``headers`` as the (name, value) bytes the channel's parser would store, or None for the byte path.

    None where the head is not of the common shape (what
    :func:`~txhyco.listener.httprequest.plain_request_head` writes as is), or
    where the channel would refuse it.
    """
    if not (TOKEN.fullmatch(method) and PLAIN_TARGET.fullmatch(target)):
        return None
    if len(headers) > channel.maxHeaders:
        return None
    # What the channel counts: each line of the head without its CRLF.
    total = longest = len(method) + len(target) + 1 + len(_VERSION) + 1
    fields = []
    for name, value in headers:
        if not TOKEN.fullmatch(name) or (value and not PLAIN_FIELD_VALUE.fullmatch(value)):
            return None
        line = len(name) + 2 + len(value)
        total += line
        if line > longest:
            longest = line
        fields.append((name.encode("ascii"), value.encode("ascii")))
    if total > channel.totalHeadersSize or longest > channel.MAX_LENGTH:
        return None
    return fields


def serve_directly(app, channel, transport, method: str, target: str, fields: list, body: bytes) -> None:
    """Connect ``app`` to ``transport`` and give its channel the complete request (see above)."""
    channel.timeOut = None
    app.makeConnection(transport)
    factory = channel.requestFactory
    if INonQueuedRequestFactory.providedBy(factory):
        request = factory(channel)
    else:
        request = factory(channel, len(channel.requests))
    channel.requests.append(request)
    length = 0
    add = request.requestHeaders.addRawHeader
    for name, value in fields:
        add(name, value)
        if name == b"Content-Length":
            length = len(body)
    request.parseCookies()
    channel.persistent = channel.checkPersistence(request, _VERSION)
    request.gotLength(length)
    if length:
        request.handleContentChunk(body)
    request.requestReceived(method.encode("ascii"), target.encode("ascii"), _VERSION)
