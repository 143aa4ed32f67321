"""Playing a hostile relay: request commands sent straight down a listener's
control channel (what the relay's front door would never build), and the
listener's answers to them collected by request id."""
from __future__ import annotations

import json

from twisted.web.resource import Resource


def control_channel(relay, entity: str):
    """The relay's end of the one control channel registered on ``entity``."""
    (channel,) = relay.relay.registry.entities[entity].listeners.values()
    return channel


class Answers:
    """Stands in for the relay's exchanges of the requests a test sends itself:
    ``got`` maps the request id of each response the listener sent to its status code."""

    def __init__(self, channel) -> None:
        self.channel = channel
        self.got: dict[str, int] = {}

    def expect(self, request_id: str) -> None:
        self.channel.exchanges[request_id] = _Exchange(self.got)

    def send(self, request_id: str, entity: str, target: str, headers: dict, *, method: str = "GET",
             body: bytes | None = None) -> None:
        """Send a request command (and its body, if any, as the next binary message) and expect its answer."""
        self.expect(request_id)
        command = {"request": {
            "address": f"ws://127.0.0.1:1/$hc/{entity}?sb-hc-action=request&sb-hc-id={request_id}",
            "id": request_id, "requestTarget": target, "method": method, "requestHeaders": headers,
            "body": body is not None}}
        self.channel.proto.sendMessage(json.dumps(command).encode(), isBinary=False)
        if body is not None:
            self.channel.proto.sendMessage(body, isBinary=True)


class _Exchange:
    __slots__ = ("got",)

    def __init__(self, got: dict) -> None:
        self.got = got

    def response_received(self, response, channel) -> None:
        # Keyed by the id the response carries, so a listener answering one
        # request with another's id shows as a wrong key.
        self.got[response.request_id] = response.status_code

    def response_body(self, data) -> None:
        pass

    def response_body_end(self) -> None:
        pass

    def listener_lost(self, channel, why=None) -> None:
        pass


class Spy(Resource):
    """A resource that records every request that reaches it: (method, uri, body)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[tuple[bytes, bytes, bytes]] = []

    def render(self, request):
        self.hits.append((request.method, request.uri, request.content.read()))
        return b"seen"
