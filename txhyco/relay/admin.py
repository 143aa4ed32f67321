"""The relay's admin interface: the fault switch (:mod:`txhyco.relay.faults`) over HTTP, JSON in and out.

Off unless the relay is given an admin endpoint (``txhyco relay --admin``,
``admin = "..."`` in its TOML). Every request needs a SAS token with Manage
rights, in the ``Authorization`` or ``ServiceBusAuthorization`` header,
verified as the relay verifies listeners' and senders' tokens (a
namespace-wide token, or one for the hybrid connection acted on): 401
without a valid token, 403 without Manage.

- ``GET /admin/hybridConnections``: hybrid connections with listeners or
  armed faults (their listeners, relayed connections, armed faults);
- ``GET /admin/hybridConnections/{path}``: one of them;
- ``POST /admin/hybridConnections/{path}/{action}`` with a JSON object of
  the action's fields (an empty body is ``{}``): ``drop``, ``refuse``,
  ``delay``, ``cut``, ``stall``, ``expireToken``, ``clear``.

Errors are ``{"error": "one sentence"}`` with a 4xx status; an unknown
action or field is an error, never ignored.
"""
from __future__ import annotations

import inspect
import json
from typing import Any
from urllib.parse import unquote

from twisted.web.resource import Resource
from twisted.web.server import Site

from txhyco._suggest import unknown_name
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights

from .auth import check_token, host_only
from .config import HybridConnectionConfig
from .faults import ACTIONS, FaultSwitch, SenderFault
from .registry import Entity

PREFIX = "/admin/hybridConnections"
#: The largest request body the admin interface reads.
MAX_BODY = 64 * 1024


def _fields(method_name: str) -> tuple[str, ...]:
    parameters = inspect.signature(getattr(FaultSwitch, method_name)).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)


#: action -> the JSON fields it takes (its keyword arguments)
ACTION_FIELDS = {action: _fields(method) for action, method in ACTIONS.items()}


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminResource(Resource):
    """The whole admin API under one leaf resource (paths may hold ``/``)."""

    isLeaf = True

    def __init__(self, relay) -> None:
        super().__init__()
        self.relay = relay
        self.switch = FaultSwitch(relay)

    def render(self, request) -> bytes:
        try:
            status, answer = self._handle(request)
        except AdminError as e:
            status, answer = e.status, {"error": e.message}
            if e.status == 401:
                request.setHeader(b"www-authenticate", b"SharedAccessSignature")
            elif e.status == 405:
                request.setHeader(b"allow", b"GET" if request.method == b"POST" else b"POST")
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(answer, indent=1).encode("utf-8") + b"\n"

    def _handle(self, request) -> tuple[int, Any]:
        path, action = self._route(request.path)
        self._authorize(request, path)
        if action is None:
            if request.method != b"GET":
                raise AdminError(405, f"{request.path.decode('ascii', 'replace')} is read with GET; actions are POSTed to .../{{path}}/{{action}}.")
            try:
                described = self.switch.describe(path)
            except ProtocolError as e:
                raise AdminError(e.status, e.message) from None
            return 200, {"hybridConnections": described} if path is None else described[0]
        if request.method != b"POST":
            raise AdminError(405, f"The action {action!r} is invoked with POST.")
        if action not in ACTIONS:
            raise AdminError(400, f"{unknown_name('action', action, ACTIONS)}.")
        arguments = self._body(request, action)
        try:
            result = getattr(self.switch, ACTIONS[action])(path, **arguments)
        except ProtocolError as e:
            raise AdminError(e.status, e.message) from None
        answer: dict[str, Any] = {"path": self.switch.hybrid_connection(path), "action": action}
        if isinstance(result, SenderFault):
            answer["armed"] = result.describe()
        elif isinstance(result, dict):
            answer.update(result)
        else:
            answer["affected"] = result
        return 200, answer

    @staticmethod
    def _route(raw_path: bytes) -> tuple[str | None, str | None]:
        """(hybrid connection path or None, action or None) of a request path."""
        text = raw_path.decode("ascii", "replace")
        if text.rstrip("/") == PREFIX:
            return None, None
        if not text.startswith(PREFIX + "/"):
            raise AdminError(404, f"No such admin resource: the admin API is under {PREFIX}.")
        try:
            segments = [unquote(s, errors="strict") if "%" in s else s for s in text[len(PREFIX) + 1:].split("/")]
        except UnicodeDecodeError:
            raise AdminError(400, "The path's percent-encoding is not UTF-8.") from None
        segments = [s for s in segments if s]
        if not segments:
            return None, None
        if len(segments) == 1:
            return segments[0], None
        return "/".join(segments[:-1]), segments[-1]

    def _authorize(self, request, path: str | None) -> None:
        raw = request.getHeader(b"servicebusauthorization") or request.getHeader(b"authorization")
        token = raw.decode("latin-1") if raw else None
        config = self.relay.config
        # A namespace-wide token covers every path; one for a hybrid connection
        # (with that connection's own rules) covers just it.
        hc = (config.entity(path) if path else None) or HybridConnectionConfig(name=path or "")
        try:
            check_token(
                config,
                Entity(hc),
                token.strip() if token else None,
                host=host_only((request.getHeader(b"host") or b"").decode("latin-1")),
                required=Rights.MANAGE,
                now=self.relay.now(),
            )
        except ProtocolError as e:
            self.relay.metrics.auth_failures.labels(str(e.status)).inc()
            message = e.message
            if e.status == 401 and not token:
                message = ("The admin interface needs a SAS token with Manage rights in the Authorization "
                           "or ServiceBusAuthorization header (txhyco token makes one).")
            raise AdminError(e.status, message) from None

    @staticmethod
    def _body(request, action: str) -> dict[str, Any]:
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise AdminError(413, f"The request body is larger than {MAX_BODY} bytes.")
        if not raw.strip():
            body: Any = {}
        else:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as e:
                raise AdminError(400, f"The request body is not JSON ({str(e).split(':')[0]}).") from None
        if not isinstance(body, dict):
            raise AdminError(400, f"The request body must be a JSON object of the {action!r} action's fields.")
        known = ACTION_FIELDS[action]
        for name in body:
            if name not in known:
                raise AdminError(400, f"{action}: {unknown_name('field', name, known)}.")
        missing = [name for name in _required(action) if name not in body]
        if missing:
            raise AdminError(400, f"{action} needs the field {missing[0]!r}.")
        if any(value is None for value in body.values()):
            raise AdminError(400, f"{action}: null is not a value; leave a field out for its default.")
        return body


def _required(action: str) -> tuple[str, ...]:
    parameters = inspect.signature(getattr(FaultSwitch, ACTIONS[action])).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty)


def admin_site(relay) -> Site:
    """The admin interface of ``relay`` as a twisted.web site (no request log: it would hold tokens' paths)."""
    resource = AdminResource(relay)
    site = Site(resource)
    site.log = lambda request: None  # the access log is not wanted; tokens travel in headers anyway
    site.displayTracebacks = False
    site.noisy = False
    return site

