"""Stream mode on the listener side: each accepted connection becomes a byte stream.

For factories that do not speak HTTP (LineReceiver, a TCP tunnel...): each
``accept`` opens an Autobahn rendezvous leg (:mod:`txhyco._twisted.streamleg`)
and the application protocol gets its messages as bytes.
"""
from __future__ import annotations

from txhyco._twisted.handshake import open_raw_websocket, open_websocket
from txhyco._twisted.streamleg import STREAM_LEG_OPTIONS, StreamLeg
from txhyco.address import HybridConnectionAddress, peer_address
from txhyco.protocol.addresses import reject_url


def accept_stream(reactor, hc, factory, accept, *, connections=None) -> None:
    """Serve one ``accept`` in stream mode (the listener's ``on_accept``); the leg is kept in ``connections``."""
    peer = peer_address(accept.remote_endpoint)
    local = HybridConnectionAddress(hc.namespace, hc.path)

    def leg() -> StreamLeg:
        made = StreamLeg(factory, peer, local)
        if connections is not None:
            connections.add(made)
        return made

    d = open_websocket(reactor, accept.address, leg, ca_file=hc.ca_file, proxy=hc.proxy, **STREAM_LEG_OPTIONS)
    # Could not open the rendezvous: nothing to tell the application.
    d.addErrback(lambda failure: None)


def reject_accept(reactor, hc, accept, status: int, reason: str) -> None:
    """Refuse one ``accept``: the sender gets ``status`` and ``reason``."""
    open_raw_websocket(reactor, reject_url(accept.address, status, reason), ca_file=hc.ca_file, proxy=hc.proxy).addErrback(lambda f: None)
