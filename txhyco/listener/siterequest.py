"""twisted.web's fast path: a relayed request handed to a ``Site``'s ``Request`` without HTTP/1.1 bytes.

On the byte path (:mod:`txhyco.listener.http`) the listener writes the
synthetic request head (:mod:`txhyco.listener.httprequest`) and the
application's protocol parses it again. When that protocol is twisted.web's
own ``HTTPChannel`` (what a ``Site`` builds) and the request arrived in full,
:func:`serve_directly` gives the channel's ``Request`` the same method,
target, header fields and body through the calls the channel's parser would
make (``Request.requestHeaders.addRawHeader``, ``parseCookies``,
``gotLength``, ``handleContentChunk``, ``requestReceived``). The answer's
head is taken from the ``Headers`` the request hands to this channel's
``writeHeaders`` (an attribute of this one channel; a head out of the
common shape is written as bytes after all), its body from the bytes the
request writes, as on the byte path.

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
from twisted.web.http import HTTPChannel, Request
from twisted.web.http_headers import Headers
from twisted.web.iweb import INonQueuedRequestFactory

from txhyco.protocol.grammar import PLAIN_TARGET, TOKEN, plain_fields

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


def _heads_as_headers() -> bool:
    """Whether this Twisted's ``Request.write`` gives the channel's ``writeHeaders`` a ``Headers`` (the
    response head can then be read without writing it); older ones give it pairs, which stay on the byte path."""
    write = getattr(Request, "write", None)
    code = getattr(write, "__code__", None)
    return (code is not None and "writeHeaders" in code.co_names and "responseHeaders" in code.co_names
            and callable(getattr(HTTPChannel, "writeHeaders", None)) and callable(getattr(Headers, "getAllRawHeaders", None)))


_HEADS_AS_HEADERS = _heads_as_headers()

#: Whether this Twisted has what the fast path relies on (else the byte path serves every request).
AVAILABLE = _WRAPPER is not None


def site_channel(app):
    """The ``HTTPChannel`` behind ``app`` (a protocol from a factory) if it can be served directly, else None."""
    if not ENABLED or _WRAPPER is None:
        return None
    channel = app.__dict__.get("_channel") if type(app) is _WRAPPER else app
    if type(channel) is not HTTPChannel or channel.__dict__.get("requests").__class__ is not list:
        return None
    factory = channel.requestFactory
    if not (factory is Request or (isinstance(factory, type) and issubclass(factory, Request))):
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
    count = len(headers)
    if not count or count > channel.maxHeaders:
        return None
    names, values = zip(*headers)
    if not plain_fields(names, values):
        return None
    # What the channel counts: each line of the head without its CRLF
    # ("Name: value"; the request line).
    request_line = len(method) + len(target) + 2 + len(_VERSION)
    if request_line + sum(map(len, names)) + sum(map(len, values)) + 2 * count > channel.totalHeadersSize:
        return None
    if channel.MAX_LENGTH < channel.totalHeadersSize:
        if max(len(name) + len(value) + 2 for name, value in headers) > channel.MAX_LENGTH:
            return None
    return [(name.encode("ascii"), value.encode("ascii")) for name, value in headers]


def serve_directly(app, channel, transport, method: str, target: str, fields: list, body: bytes, read_head=None) -> None:
    """Connect ``app`` to ``transport`` and give its channel the complete request (see above).

    ``read_head(version, code, reason, pairs)``, if given, is offered the
    response head as the request hands it to the channel (``pairs``: (name,
    value) bytes in the order the channel would write them); when it returns
    False the channel writes the head as bytes, as always.
    """
    channel.timeOut = None
    if read_head is not None and _HEADS_AS_HEADERS:
        write_head = channel.writeHeaders

        def writeHeaders(version, code, reason, headers):
            if headers.__class__ is Headers:
                pairs = [(name, value) for name, values in headers.getAllRawHeaders() for value in values]
                if read_head(version, code, reason, pairs):
                    return
            write_head(version, code, reason, headers)

        # this channel only (it serves this one relayed request): its class keeps its own
        channel.writeHeaders = writeHeaders
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
