"""A plain Autobahn WebSocket client for tests: connect, send, await messages and closes."""
from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, WebSocketServerProtocol, connectWS
from twisted.internet import defer


class HandshakeFailed(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class Leg(WebSocketClientProtocol):
    """Collects messages in ``self.messages`` (a DeferredQueue of (payload, is_binary))."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: defer.DeferredQueue = defer.DeferredQueue()
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.response = None

    def onConnect(self, response) -> None:
        self.response = response

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload, isBinary) -> None:
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean, code, reason) -> None:
        if not self.opened.called:
            status, text = None, reason or ""
            line = getattr(self, "http_status_line", None)
            if line:
                parts = line.split(" ", 2)
                if len(parts) >= 2 and parts[1].isdigit():
                    status = int(parts[1])
                    text = parts[2] if len(parts) > 2 else ""
            self.opened.errback(HandshakeFailed(status, text))
        if not self.closed.called:
            self.closed.callback((wasClean, self.remoteCloseCode, self.remoteCloseReason))


class RelayLeg(Leg):
    """A :class:`Leg` for ``connect_relay``, which reports a failed opening itself."""

    def __init__(self) -> None:
        super().__init__()
        self.opened.addErrback(lambda failure: None)


class Echo(WebSocketServerProtocol):
    """Sends every message back as it came."""

    def onMessage(self, payload, isBinary) -> None:
        self.sendMessage(payload, isBinary)


def ws_connect(url: str, *, headers: dict | None = None, protocols=None, cls=Leg, context=None, **options) -> defer.Deferred:
    """Open a WebSocket (``context``: a TLS client context for wss); fires with the protocol once open, or fails with HandshakeFailed."""
    factory = WebSocketClientFactory(url, headers=headers or {}, protocols=protocols)
    factory.protocol = cls
    factory.setProtocolOptions(openHandshakeTimeout=40, closeHandshakeTimeout=5, **options)
    made: defer.Deferred = defer.Deferred()

    original = factory.buildProtocol

    def build(addr):
        proto = original(addr)
        proto.opened.chainDeferred(made)
        return proto

    factory.buildProtocol = build
    connectWS(factory, context)
    return made
