"""What the inspector keeps: a ring of the last exchanges, each with capped bodies and masked secrets.

An :class:`Inspector` is attached to one listener. For each relayed HTTP
request the listener's bridge (:mod:`txhyco.listener.http`) calls an
:class:`HttpCapture` at the request's start, with each body piece, at the
response head, with each response body piece and at the end; for each
relayed WebSocket (:mod:`txhyco.listener.accept`) a
:class:`WebSocketCapture` at open, with the bytes each way, and at the end.

Capture is cheap on purpose: a body piece is counted, and kept only while
the body is under its cap (the slice that fits is the only copy); nothing is
encoded until someone asks; live viewers are told of changes in batches
(:meth:`Inspector.changed`), and only while there are some.
"""
from __future__ import annotations

import itertools
import time
from collections import OrderedDict

from txhyco.inspector.frames import MessageReader
from txhyco.inspector.masking import mask_headers, mask_target
from txhyco.protocol.addresses import encode_entity_path, relative_target, strip_reserved_query

#: Exchanges kept (the oldest goes when a new one comes).
DEFAULT_LIMIT = 500
#: Bytes kept of each request and response body; the rest is counted.
DEFAULT_BODY_CAP = 1024 * 1024
#: Messages kept per WebSocket connection (the first ones), and bytes kept of each.
DEFAULT_MESSAGES = 200
DEFAULT_MESSAGE_CAP = 64 * 1024
#: Replays kept per exchange (the latest ones).
REPLAYS_KEPT = 10
#: Seconds between batched notices to live viewers.
NOTIFY_DELAY = 0.1


class BodyCapture:
    """The first ``cap`` bytes of a body, and its whole size."""

    __slots__ = ("cap", "size", "_parts", "_kept")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self._parts: list[bytes] = []
        self._kept = 0

    def add(self, data: bytes) -> None:
        n = len(data)
        self.size += n
        room = self.cap - self._kept
        if room > 0 and n:
            piece = data if n <= room else data[:room]
            self._parts.append(bytes(piece))
            self._kept += len(piece)

    @property
    def kept(self) -> bytes:
        if len(self._parts) > 1:
            self._parts = [b"".join(self._parts)]
        return self._parts[0] if self._parts else b""

    @property
    def truncated(self) -> bool:
        return self.size > self._kept


class Capture:
    """What every captured exchange has."""

    kind = ""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector
        self.id = 0  # given when it joins the ring
        self.started = time.time()
        self.ended: float | None = None
        self.method = ""
        self.target = ""
        self.sender = ""
        self.request_headers: list[tuple[str, str]] = []
        self.status: int | None = None
        self.reason = ""
        self.response_headers: list[tuple[str, str]] = []
        self.error: str | None = None

    @property
    def state(self) -> str:
        if self.ended is None:
            return "pending"
        return "failed" if self.error else "complete"

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else max(0.0, self.ended - self.started)

    def _arrived(self, method, target, headers, remote_endpoint) -> None:
        self.method = method or ""
        target = target or "/"
        prefix = self.inspector.prefix
        if prefix is not None:
            # The common shape (/hc/rest) directly; relative_target judges any other.
            if target.startswith(prefix) and target[len(prefix):len(prefix) + 1] in ("/", "?"):
                target = target[len(prefix):]
                target = target if target[:1] == "/" else "/" + target
            else:
                target = relative_target(target, self.inspector.hc.path)[0]
        self.target = mask_target(target)
        self.request_headers = mask_headers(headers)
        if remote_endpoint is not None:
            address = remote_endpoint.address
            self.sender = f"[{address}]:{remote_endpoint.port}" if ":" in address else f"{address}:{remote_endpoint.port}"
        self.inspector.add(self)


class HttpCapture(Capture):
    """One relayed HTTP request and its response (the listener's observer for it)."""

    kind = "http"

    def __init__(self, inspector: Inspector) -> None:
        super().__init__(inspector)
        cap = inspector.body_cap
        self.request_body = BodyCapture(cap)
        self.response_body = BodyCapture(cap)
        self.remote_endpoint = None  # the sender's (a replay presents it again)
        self.replays: list[dict] = []

    # -- the bridge's calls (txhyco.listener.http) ------------------------------

    def request_started(self, request, body: bytes | None) -> None:
        """``request`` is about to reach the application; ``body`` is all of it, or None (it streams)."""
        self.remote_endpoint = request.remote_endpoint
        self._arrived(request.method, request.request_target, request.request_headers.items(), request.remote_endpoint)
        if body:
            self.request_body.add(body)

    def request_data(self, data: bytes) -> None:
        self.request_body.add(data)

    def response_head(self, status: int, reason: str, headers) -> None:
        self.status, self.reason = status, reason
        self.response_headers = mask_headers(headers)
        self.inspector.changed(self)

    def response_data(self, data: bytes) -> None:
        self.response_body.add(data)

    def exchange_ended(self, error: str | None = None) -> None:
        """The exchange is over: answered (``error`` None) or not (why)."""
        if self.ended is not None:
            return
        self.ended = time.time()
        if error:
            self.error = error
        self.inspector.changed(self)

    def answered_for_application(self, status: int, reason: str, body: bytes) -> None:
        """The listener answered in the application's place (an error it found)."""
        self.response_head(status, reason, [("Content-Type", "text/plain; charset=utf-8")])
        self.response_body.add(body)

    def add_replay(self, replay: dict) -> None:
        self.replays.append(replay)
        del self.replays[:-REPLAYS_KEPT]
        self.inspector.changed(self)

    # -- what the API shows ------------------------------------------------------

    @property
    def request_size(self) -> int:
        return self.request_body.size

    @property
    def response_size(self) -> int:
        return self.response_body.size


class WebSocketCapture(Capture):
    """One relayed WebSocket connection and its first messages each way."""

    kind = "websocket"

    def __init__(self, inspector: Inspector, accept) -> None:
        super().__init__(inspector)
        address = accept.address
        path_and_query = address.split("://", 1)[-1].partition("/")[2]
        path, _, query = path_and_query.partition("?")
        query = strip_reserved_query(query)
        self.messages: list[dict] = []
        self.message_count = 0
        self.sizes = {"in": 0, "out": 0}  # payload bytes from the sender, to the sender
        self._readers = {
            "in": MessageReader(lambda *m: self._message("in", *m), inspector.message_cap),
            "out": MessageReader(lambda *m: self._message("out", *m), inspector.message_cap),
        }
        self._arrived("GET", "/" + path + ("?" + query if query else ""), accept.connect_headers.items(), accept.remote_endpoint)

    # -- the bridge's calls (txhyco.listener.accept) ----------------------------

    def opened(self) -> None:
        self.status, self.reason = 101, "Switching Protocols"
        self.inspector.changed(self)

    def received(self, data: bytes) -> None:
        """Frames from the sender, as the relay delivered them."""
        self._readers["in"].feed(data)

    def sent(self, data: bytes) -> None:
        """Frames to the sender, as the application wrote them."""
        self._readers["out"].feed(data)

    def closed(self, why: str | None = None, status: int | None = None) -> None:
        if self.ended is not None:
            return
        self.ended = time.time()
        if self.status is None:
            self.status = status
            self.error = why or "closed before it opened"
        self.inspector.changed(self)

    def _message(self, direction: str, kind: str, size: int, kept: bytes) -> None:
        if kind in ("text", "binary"):
            self.sizes[direction] += size
        self.message_count += 1
        if len(self.messages) < self.inspector.message_limit:
            self.messages.append({"time": time.time(), "direction": direction, "kind": kind, "size": size, "kept": kept})
        if self.message_count % 50 == 1:
            self.inspector.changed(self)

    @property
    def request_size(self) -> int:
        return self.sizes["in"]

    @property
    def response_size(self) -> int:
        return self.sizes["out"]

    @property
    def unreadable(self) -> str | None:
        return self._readers["in"].broken or self._readers["out"].broken


class Inspector:
    """The ring of captures of one listener, and the live viewers to tell of changes.

    :param hc: the listener's hybrid connection (targets are shown relative to it), or None.
    :param replay_factory: the application's protocol factory (replays go to it), or None.
    """

    def __init__(self, reactor=None, hc=None, *, limit: int = DEFAULT_LIMIT, body_cap: int = DEFAULT_BODY_CAP,
                 message_limit: int = DEFAULT_MESSAGES, message_cap: int = DEFAULT_MESSAGE_CAP) -> None:
        if limit < 1:
            raise ValueError("an inspector keeps at least one exchange")
        if body_cap < 0 or message_limit < 0 or message_cap < 0:
            raise ValueError("inspector caps cannot be negative")
        self.reactor = reactor
        self.hc = hc
        #: the hybrid connection's path as senders write it (/hc), or None
        self.prefix = None if hc is None else "/" + encode_entity_path(hc.path)
        self.limit = limit
        self.body_cap = body_cap
        self.message_limit = message_limit
        self.message_cap = message_cap
        self.replay_factory = None
        self._ring: OrderedDict[int, Capture] = OrderedDict()
        self._ids = itertools.count(1)
        self._viewers: list = []  # callables given the changed captures
        self._changed: dict[int, Capture] = {}
        self._notify_call = None

    # -- observers for the listener ------------------------------------------------

    def http_observer(self) -> HttpCapture:
        """An observer for one relayed HTTP request (it joins the ring when the request arrives)."""
        return HttpCapture(self)

    def websocket_observer(self, accept) -> WebSocketCapture:
        """An observer for one accepted WebSocket connection (``accept`` is its command)."""
        return WebSocketCapture(self, accept)

    # -- the ring ----------------------------------------------------------------

    def add(self, capture: Capture) -> None:
        capture.id = next(self._ids)
        self._ring[capture.id] = capture
        while len(self._ring) > self.limit:
            _, gone = self._ring.popitem(last=False)
            self._changed.pop(gone.id, None)
        self.changed(capture)

    def get(self, capture_id: int) -> Capture | None:
        return self._ring.get(capture_id)

    def captures(self) -> list[Capture]:
        """Newest first."""
        return list(reversed(self._ring.values()))

    def __len__(self) -> int:
        return len(self._ring)

    # -- live viewers ------------------------------------------------------------

    def subscribe(self, viewer) -> None:
        """``viewer(captures)`` is called with changed captures, in batches, until unsubscribed."""
        self._viewers.append(viewer)

    def unsubscribe(self, viewer) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)

    def changed(self, capture: Capture) -> None:
        if not self._viewers or capture.id not in self._ring:
            return
        self._changed[capture.id] = capture
        if self._notify_call is None and self.reactor is not None:
            self._notify_call = self.reactor.callLater(NOTIFY_DELAY, self._notify)

    def _notify(self) -> None:
        self._notify_call = None
        changed, self._changed = list(self._changed.values()), {}
        for viewer in list(self._viewers):
            viewer(changed)

    def stop(self) -> None:
        """No more notices (the page is gone)."""
        self._viewers.clear()
        call, self._notify_call = self._notify_call, None
        if call is not None and call.active():
            call.cancel()
