"""Replaying a captured request to the listener's application, optionally edited.

The replay goes where the relayed request went: a fresh protocol from the
listener's own factory (for ``txhyco listen --http`` that is a connection to
the web server), fed the same HTTP/1.1 request the listener would write for
it (:func:`txhyco.listener.httprequest.synthetic_request_head`). Its answer
is read with h11 and kept like a captured one (capped, secrets masked).

A header whose captured value was masked is not sent (its value was never
kept) unless the edit gives it a real value again.
"""
from __future__ import annotations

import base64
import binascii
import time

import h11
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from txhyco._twisted.transport import TransportBase
from txhyco.inspector.capture import BodyCapture, HttpCapture
from txhyco.inspector.masking import MASK, mask_headers, mask_target
from txhyco.inspector.views import body_json, content_type

#: Seconds a replay waits for the application's complete answer.
REPLAY_TIMEOUT = 30.0


class ReplayError(Exception):
    """A replay that cannot be made: ``status`` is the API's answer, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def replay_parts(capture: HttpCapture, edits: dict) -> tuple[str, str, list, bytes, list]:
    """(method, path, headers, body, names of dropped masked headers) for a replay of ``capture`` with ``edits``."""
    if not isinstance(edits, dict):
        raise ReplayError(400, "the replay's JSON body must be an object")
    unknown = set(edits) - {"method", "path", "headers", "body", "bodyBase64"}
    if unknown:
        raise ReplayError(400, f"unknown replay field(s): {', '.join(sorted(unknown))}")
    method = edits.get("method", capture.method)
    path = edits.get("path", capture.target)
    if not isinstance(method, str) or not isinstance(path, str):
        raise ReplayError(400, "method and path must be strings")
    if not path.startswith("/"):
        raise ReplayError(400, "the path must start with /")
    headers = edits.get("headers", capture.request_headers)
    if not isinstance(headers, list) or not all(
            isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers):
        raise ReplayError(400, "headers must be a list of [name, value] pairs of strings")
    kept, dropped = [], []
    for name, value in headers:
        (dropped if value == MASK else kept).append((name, value) if value != MASK else name)
    if "body" in edits and "bodyBase64" in edits:
        raise ReplayError(400, "give body or bodyBase64, not both")
    if "body" in edits:
        if not isinstance(edits["body"], str):
            raise ReplayError(400, "body must be a string")
        body = edits["body"].encode("utf-8")
    elif "bodyBase64" in edits:
        try:
            body = base64.b64decode(edits["bodyBase64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ReplayError(400, "bodyBase64 is not base64") from None
    else:
        if capture.request_body.truncated:
            raise ReplayError(409, f"the captured request body was {capture.request_body.size} bytes and only "
                                   f"{len(capture.request_body.kept)} were kept: give the body to replay")
        body = capture.request_body.kept
    return method, path, kept, body, dropped


def replay(reactor, inspector, capture: HttpCapture, edits: dict) -> defer.Deferred:
    """Send ``capture``'s request (with ``edits``) to the application; fires with the replay's record."""
    from txhyco.listener.httprequest import synthetic_request_head
    from txhyco.protocol.addresses import encode_entity_path
    from txhyco.protocol.errors import ProtocolError
    from txhyco.protocol.messages import Headers, Request

    factory, hc = inspector.replay_factory, inspector.hc
    if factory is None or hc is None:
        raise ReplayError(503, "this inspector has no application to replay to")
    method, path, headers, body, dropped = replay_parts(capture, edits)
    try:
        request = Request(
            address="inspector-replay", id=f"replay-{capture.id}",
            request_target="/" + encode_entity_path(hc.path) + path, method=method,
            request_headers=Headers(headers), body=bool(body),
            remote_endpoint=capture.remote_endpoint,
        )
        head = synthetic_request_head(request, hc, body)
    except (ProtocolError, h11.LocalProtocolError, UnicodeError) as e:
        raise ReplayError(400, f"the edited request cannot be sent: {e}") from None
    record = {
        "time": time.time(),
        "request": {
            "method": method, "path": mask_target(path), "headers": [list(p) for p in mask_headers(headers)],
            "body": body_json(body[:inspector.body_cap], len(body), content_type(headers)),
            "dropped": dropped,
        },
    }
    client = ReplayClient(reactor, factory, hc, request, inspector.body_cap)
    d = client.run(head + body)

    def done(answer):
        record.update(answer)
        capture.add_replay(record)
        return record

    d.addCallback(done)
    return d


class ReplayTransport(TransportBase):
    """The application's side of a replay: what it writes goes to the :class:`ReplayClient`."""

    def __init__(self, client: ReplayClient, peer, host) -> None:
        super().__init__(peer, host)
        self.client = client
        self.producer = None

    def write(self, data: bytes) -> None:
        if not self.disconnected and data:
            self.client.data(data)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.client.app_closed()

    def abortConnection(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class ReplayClient:
    """One replay: feeds the request, reads the answer, lets the application go."""

    def __init__(self, reactor, factory, hc, request, body_cap: int) -> None:
        self.reactor = reactor
        self.factory = factory
        self.hc = hc
        self.request = request
        self.conn = h11.Connection(h11.CLIENT)
        # Only the method matters to how h11 reads the answer (HEAD: no body).
        self.conn.send(h11.Request(method=request.method, target="/", headers=[("Host", "replay")]))
        self.conn.send(h11.EndOfMessage())
        self.status: int | None = None
        self.reason = ""
        self.headers: list = []
        self.body = BodyCapture(body_cap)
        self.started = 0.0
        self.result: defer.Deferred = defer.Deferred()
        self.transport: ReplayTransport | None = None
        self._timeout = None

    def run(self, data: bytes) -> defer.Deferred:
        from txhyco.address import HybridConnectionAddress, peer_address

        self.started = time.monotonic()
        peer = peer_address(self.request.remote_endpoint)
        protocol = self.factory.buildProtocol(peer)
        if protocol is None:
            self._finish("the application declined the connection")
            return self.result
        self._timeout = self.reactor.callLater(REPLAY_TIMEOUT, self._overdue)
        self.transport = ReplayTransport(self, peer, HybridConnectionAddress(self.hc.namespace, self.hc.path))
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)
        if not self.result.called and self.transport.protocol is not None:
            self.transport.protocol.dataReceived(data)
        return self.result

    def data(self, data: bytes) -> None:
        if self.result.called:
            return
        self.conn.receive_data(data)
        self._events()

    def app_closed(self) -> None:
        if self.result.called:
            return
        if self.conn.their_state is not h11.DONE:
            self.conn.receive_data(b"")
            self._events()
        if not self.result.called:
            self._finish("the application closed the connection before its answer was complete")

    def _events(self) -> None:
        while not self.result.called:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as e:
                self._finish(f"the application sent a malformed HTTP response: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status, self.reason = event.status_code, event.reason.decode("utf-8", "replace")
                self.headers = mask_headers(event.headers.raw_items())
            elif isinstance(event, h11.Data):
                self.body.add(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._finish(None)

    def _overdue(self) -> None:
        self._timeout = None
        self._finish(f"no complete answer within {REPLAY_TIMEOUT:g} s")

    def _finish(self, error: str | None) -> None:
        if self.result.called:
            return
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        transport = self.transport
        if transport is not None and not transport.disconnected:
            transport.disconnected = True
            protocol = transport.protocol
            if protocol is not None:
                self.reactor.callLater(0, protocol.connectionLost, Failure(ConnectionDone("replay complete")))
        answer = {"durationMs": round((time.monotonic() - self.started) * 1000, 3), "error": error, "response": None}
        if self.status is not None:
            answer["response"] = {
                "status": self.status, "reason": self.reason, "headers": [list(p) for p in self.headers],
                "body": body_json(self.body.kept, self.body.size, content_type(self.headers)),
            }
        self.result.callback(answer)
