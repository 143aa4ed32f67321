"""The inspector's web server: its page, its JSON API and its live event stream.

::

    GET  /                          the page (and /inspector.js, /inspector.css)
    GET  /api/requests              summaries, newest first (?method=&status=&path= narrow them)
    GET  /api/requests/ID           one exchange: headers, bodies, messages, replays
    POST /api/requests/ID/replay    replay it to the application (JSON body: edits, or {})
    GET  /api/requests/ID/curl      as a curl command (text/plain)
    GET  /api/requests/ID/har       as a HAR 1.2 log
    GET  /api/events                server-sent events: "summaries", a JSON list of changed ones

Nothing else is served. Every request passes :mod:`txhyco.inspector.guard`
first; every answer forbids framing, sniffing and caching.
"""
from __future__ import annotations

import json
import re

from twisted.logger import Logger
from twisted.web import resource, server

from txhyco.inspector import export, page, views
from txhyco.inspector.capture import Inspector
from txhyco.inspector.guard import refusal
from txhyco.inspector.replay import ReplayError, replay

log = Logger()

_ITEM = re.compile(rb"/api/requests/([0-9]{1,12})(?:/(replay|curl|har))?")
#: the largest replay edit accepted (a body to send, in JSON)
MAX_EDIT = 64 * 1024 * 1024

SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
    b"Cross-Origin-Resource-Policy": b"same-origin",
    b"Content-Security-Policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


class _Headers:
    """``get(name)`` over a twisted.web request's headers, as str."""

    def __init__(self, request) -> None:
        self.request = request

    def get(self, name: str):
        value = self.request.getHeader(name.encode("ascii"))
        return None if value is None else value.decode("latin-1")


def _json(request, status: int, document) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(document).encode("ascii")


def _problem(request, status: int, why: str) -> bytes:
    return _json(request, status, {"error": why})


class EventHub:
    """The open event streams; changed captures are encoded once per batch for all of them."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector
        self.streams: list = []

    def open(self, request) -> None:
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.write(b"retry: 2000\n\n")
        if not self.streams:
            self.inspector.subscribe(self.send)
        self.streams.append(request)
        request.notifyFinish().addBoth(lambda _: self._gone(request))

    def _gone(self, request) -> None:
        if request in self.streams:
            self.streams.remove(request)
        if not self.streams:
            self.inspector.unsubscribe(self.send)

    def send(self, captures) -> None:
        if not captures:
            return
        data = json.dumps([views.summary(c) for c in captures]).encode("ascii")
        message = b"event: summaries\ndata: " + data + b"\n\n"
        for request in list(self.streams):
            request.write(message)

    def close_all(self) -> None:
        for request in list(self.streams):
            self._gone(request)
            if not request.finished:
                request.finish()


class InspectorResource(resource.Resource):
    """The whole site: routes by path (see the module doc)."""

    isLeaf = True

    def __init__(self, reactor, inspector: Inspector) -> None:
        super().__init__()
        self.reactor = reactor
        self.inspector = inspector
        self.events = EventHub(inspector)

    def render(self, request):
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        refused = refusal(request.method, request.path, _Headers(request))
        if refused is not None:
            return _problem(request, *refused)
        path, method = request.path, request.method
        if path.startswith(b"/api/"):
            return self._api(request, path, method)
        if method == b"POST":
            return _problem(request, 405, "method not allowed")
        asset = page.asset(path)
        if asset is None:
            return _problem(request, 404, "not found")
        body, ctype = asset
        request.setHeader(b"Content-Type", ctype)
        return body

    def _api(self, request, path: bytes, method: bytes):
        if path == b"/api/requests":
            if method == b"POST":
                return _problem(request, 405, "method not allowed")
            return _json(request, 200, self._listing(request))
        if path == b"/api/events":
            if method == b"POST":
                return _problem(request, 405, "method not allowed")
            self.events.open(request)
            return server.NOT_DONE_YET
        match = _ITEM.fullmatch(path)
        if match is None:
            return _problem(request, 404, "not found")
        capture = self.inspector.get(int(match[1]))
        if capture is None:
            return _problem(request, 404, f"no exchange {int(match[1])} (kept: the last {self.inspector.limit})")
        action = match[2]
        if (method == b"POST") != (action == b"replay"):
            return _problem(request, 405, "method not allowed")
        if action is None:
            return _json(request, 200, views.detail(capture))
        if capture.kind != "http":
            return _problem(request, 400, "only HTTP exchanges can be replayed or exported")
        if action == b"curl":
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return export.curl_command(capture).encode("utf-8")
        if action == b"har":
            request.setHeader(b"Content-Disposition", f'attachment; filename="exchange-{capture.id}.har"'.encode("ascii"))
            return _json(request, 200, export.har_log([capture]))
        return self._replay(request, capture)

    def _listing(self, request) -> dict:
        args = request.args
        method = (args.get(b"method") or [b""])[0].decode("utf-8", "replace").upper()
        status = (args.get(b"status") or [b""])[0].decode("utf-8", "replace")
        text = (args.get(b"path") or [b""])[0].decode("utf-8", "replace")
        out = []
        for capture in self.inspector.captures():
            if method and capture.method.upper() != method:
                continue
            if status and not str(capture.status or "").startswith(status):
                continue
            if text and text not in capture.target:
                continue
            out.append(views.summary(capture))
        inspector = self.inspector
        return {"limit": inspector.limit, "bodyCap": inspector.body_cap, "requests": out}

    def _replay(self, request, capture):
        raw = request.content.read(MAX_EDIT + 1)
        if len(raw) > MAX_EDIT:
            return _problem(request, 413, "the replay edit is too large")
        try:
            edits = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError):
            return _problem(request, 400, "the replay's body is not JSON")
        try:
            d = replay(self.reactor, self.inspector, capture, edits)
        except ReplayError as e:
            return _problem(request, e.status, str(e))
        gone: list = []  # the caller went away before the answer
        request.notifyFinish().addBoth(gone.append)

        def answered(record) -> None:
            if not gone:
                request.write(_json(request, 200, record))
                request.finish()

        def failed(failure) -> None:
            log.failure("replay of exchange {id} failed", failure, id=capture.id)
            if not gone:
                request.write(_problem(request, 500, "the replay failed: " + failure.getErrorMessage()))
                request.finish()

        d.addCallbacks(answered, failed)
        return server.NOT_DONE_YET


def inspector_site(reactor, inspector: Inspector) -> server.Site:
    """The twisted.web site of an inspector's page (no access log: the page polls and streams)."""
    site = server.Site(InspectorResource(reactor, inspector))
    site.log = lambda request: None
    site.noisy = False
    return site
