"""A listener that speaks the wire protocol by hand, to test the relay on its own terms.

Deliberately independent of txhyco's listener library: it shows what the
relay sends (``accepts``, ``requests``) and answers the way a test scripts it.
"""
from __future__ import annotations

import json
import uuid

from twisted.internet import defer

from txhyco.protocol.addresses import Namespace, listen_url, reject_url
from txhyco.protocol.sas import dotnet_audience, sign_token

from .wsclient import Leg, ws_connect


def make_token(relay, path: str, *, key_name=None, key=None, expiry=None, audience=None) -> str:
    from twisted.internet import reactor

    rule = relay.rule
    resource = audience or dotnet_audience(f"http://{relay.host}/{path}")
    return sign_token(resource, key_name or rule.name, key or rule.primary_key, expiry or int(reactor.seconds()) + 3600)


class EchoLeg(Leg):
    def onMessage(self, payload, isBinary) -> None:
        super().onMessage(payload, isBinary)
        if payload == b"close-me":
            self.sendClose(4000, "bye")
        else:
            self.sendMessage(payload, isBinary)


class ControlLeg(Leg):
    owner: RawListener | None = None

    def onMessageBegin(self, isBinary):
        super().onMessageBegin(isBinary)

    def onMessage(self, payload, isBinary) -> None:
        self.owner.control_message(payload, isBinary)


class RawListener:
    """Listens on ``path``; ``mode`` says what to do with an accept: echo, reject, ignore."""

    def __init__(self, relay, path: str, *, token: str | None = None, mode: str = "echo", tracking_id: str | None = None,
                 respond=None, reject_status=(403, "Go away now"), accept_class=None) -> None:
        self.relay = relay
        self.path = path
        self.mode = mode
        self.token = token if token is not None else make_token(relay, path)
        self.tracking_id = tracking_id or str(uuid.uuid4())
        self.respond = respond or (lambda request, body: (200, {"Content-Type": "text/plain"}, b"hello " + body))
        self.reject_status = reject_status
        #: the Leg class of accepted rendezvous sockets (EchoLeg echoes)
        self.accept_class = accept_class or EchoLeg
        #: address-only ``request`` stubs (the request went over a rendezvous)
        self.stubs: list[dict] = []
        self.accepts: list[dict] = []
        self.requests: list[tuple[dict, bytes]] = []
        self.legs: list[Leg] = []
        self.control: ControlLeg | None = None
        self._pending_request: dict | None = None

    def url(self) -> str:
        ns = Namespace.parse(self.relay.host, secure=False)
        return listen_url(ns, self.path, tracking_id=self.tracking_id)

    @defer.inlineCallbacks
    def start(self):
        self.control = yield ws_connect(self.url(), headers={"ServiceBusAuthorization": self.token}, cls=_control_class(self))
        return self

    def stop(self):
        if self.control is not None and self.control.state == self.control.STATE_OPEN:
            self.control.sendClose(1000)
            return self.control.closed
        return defer.succeed(None)

    # -- control channel ---------------------------------------------------
    def control_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            request, self._pending_request = self._pending_request, None
            if request is not None:
                self._answer(request, payload, self.control)
            return
        command = json.loads(payload)
        if "accept" in command:
            self.accepts.append(command["accept"])
            self._on_accept(command["accept"])
        elif "request" in command:
            request = command["request"]
            if "method" not in request and "body" not in request:
                self._rendezvous_request(request)
            elif request.get("body"):
                self._pending_request = request
            else:
                self._answer(request, b"", self.control)

    @defer.inlineCallbacks
    def _on_accept(self, accept):
        if self.mode == "ignore":
            return
        if self.mode == "reject":
            status, text = self.reject_status
            try:
                yield ws_connect(reject_url(accept["address"], status, text))
            except Exception:
                pass  # 410 is the expected answer
            return
        offered = accept["connectHeaders"].get("Sec-WebSocket-Protocol")
        protocols = [offered.split(",")[0].strip()] if offered else None
        leg = yield ws_connect(accept["address"], protocols=protocols, cls=self.accept_class)
        self.legs.append(leg)

    # -- HTTP ----------------------------------------------------------------
    #: the class of HTTP request rendezvous legs
    rendezvous_leg_class = Leg

    @defer.inlineCallbacks
    def _rendezvous_request(self, stub):
        self.stubs.append(stub)
        leg = yield ws_connect(stub["address"], cls=self.rendezvous_leg_class, maxMessagePayloadSize=0)
        yield self._rendezvous_opened(leg)
        header, _ = yield leg.messages.get()
        request = json.loads(header)["request"]
        body = b""
        if request.get("body"):
            body, _ = yield leg.messages.get()
        self._answer(request, body, leg)

    def _rendezvous_opened(self, leg):
        """A hook between opening a request rendezvous and reading the request (may return a Deferred)."""
        return None

    def _answer(self, request, body, channel) -> None:
        self.requests.append((request, body))
        answer = self.respond(request, body)
        if answer is None:
            return  # scripted silence
        status, headers, out = answer
        response = {"requestId": request["id"], "statusCode": status, "responseHeaders": headers, "body": bool(out)}
        if len(out) > 65536 and channel is self.control:
            self._answer_on_rendezvous(request, response, out)
            return
        channel.sendMessage(json.dumps({"response": response}).encode(), isBinary=False)
        if out:
            channel.sendMessage(out, isBinary=True)

    @defer.inlineCallbacks
    def _answer_on_rendezvous(self, request, response, out):
        leg = yield ws_connect(request["address"], cls=Leg)
        leg.sendMessage(json.dumps({"response": response}).encode(), isBinary=False)
        leg.sendMessage(out, isBinary=True, fragmentSize=65536)
        leg.sendClose(1000)


def _control_class(owner: RawListener):
    return type("BoundControlLeg", (ControlLeg,), {"owner": owner})
