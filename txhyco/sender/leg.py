"""Opening a WebSocket leg toward a relay: token, URL, connection, opening handshake.

Every Autobahn client leg that presents credentials to a relay comes through
:func:`open_leg`: ``RelayedClientFactory``/``connect_relay``, ``connect_wamp``,
the ``hyco:`` client endpoint and the listener's control channel. (Rendezvous
legs carry their credentials in the address the relay gave, and open with
:func:`txhyco._twisted.handshake.open_websocket`.)
"""
from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from txhyco._twisted.connector import connect
from txhyco._twisted.handshake import wait_open
from txhyco.address import HybridConnection

#: Seconds a sender waits for its opening handshake. The relay holds a
#: sender's upgrade until a listener accepts (up to 30 s); .NET's sender
#: waits 70 s, and so does every sender leg of ours.
SENDER_HANDSHAKE_TIMEOUT = 70


@defer.inlineCallbacks
def open_leg(reactor, hc: HybridConnection, factory, url_for: Callable[[str | None], str], *,
             token_in_query: bool = False, on_connected: Callable | None = None, connect_timeout: float = 30,
             diagnose: bool = True, large_writes_wait: bool = True):
    """Open ``factory``'s leg to the relay of ``hc``; fires with the protocol once open.

    ``url_for(token_or_none)`` builds the leg's URL (the token is given only
    with ``token_in_query``; otherwise it travels in the
    ``ServiceBusAuthorization`` header, added to the factory's own headers).
    ``on_connected(protocol, token)`` runs once TCP (and TLS) is up, before
    the handshake completes; ``connect_timeout`` bounds the TCP connection; ``diagnose``
    as in :func:`~txhyco._twisted.handshake.wait_open`; ``large_writes_wait`` as in
    :func:`txhyco._twisted.eagerwrite.install` (a sender's leg; the listener's control channel sends at once).
    Fails with :class:`txhyco.errors.RelayRefused`
    (the relay's or the listener's status) or :class:`txhyco.errors.RelayUnreachable`.
    """
    token = yield hc.get_token(reactor)
    url = url_for(token if token_in_query else None)
    headers = dict(factory.headers or {})
    if token and not token_in_query:
        headers["ServiceBusAuthorization"] = token
    factory.setSessionParameters(
        url=url, origin=factory.origin, protocols=factory.protocols, useragent=factory.useragent,
        # Proxies are ours to tunnel through (hc.proxy), never Autobahn's own CONNECT.
        headers=headers, proxy=None,
    )
    ns = hc.namespace
    proto = yield connect(reactor, ns.host, ns.effective_port, factory, secure=ns.secure, ca_file=hc.ca_file,
                          timeout=connect_timeout, proxy=hc.proxy, large_writes_wait=large_writes_wait)
    if on_connected is not None:
        on_connected(proto, token)
    yield wait_open(proto, url.split("?", 1)[0], diagnose=diagnose, proxy=hc.proxy)
    return proto
