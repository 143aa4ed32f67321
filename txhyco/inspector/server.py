"""Starting and stopping an inspector's page on a Twisted server endpoint."""
from __future__ import annotations

from functools import partial

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from txhyco.inspector.api import inspector_site
from txhyco.inspector.capture import Inspector

log = Logger()


class InspectorPage:
    """An inspector's page, listening: ``url`` to open, ``stopListening()`` to stop it."""

    def __init__(self, inspector: Inspector, site, port) -> None:
        self.inspector = inspector
        self.site = site
        self.port = port
        self.url = page_url(port.getHost())

    def stopListening(self) -> defer.Deferred:
        self.site.resource.events.close_all()
        self.inspector.stop()
        return defer.maybeDeferred(self.port.stopListening)


def page_url(address) -> str:
    """The URL of a page listening at ``address`` (a wildcard address is shown as loopback)."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return f"{address.name.decode() if isinstance(getattr(address, 'name', None), bytes) else address}"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve_inspector(reactor, inspector: Inspector, endpoint: str) -> defer.Deferred:
    """Listen on ``endpoint`` (a server endpoint string) with ``inspector``'s page; fires with an :class:`InspectorPage`."""
    site = inspector_site(reactor, inspector)
    try:
        # Any failure to make the endpoint is the user's string's: a syntax
        # error (ValueError...), or e.g. ssl: naming a certificate file that is not there.
        d = serverFromString(reactor, endpoint).listen(site)
    except Exception as e:
        d = defer.fail(e)

    def refused(failure):
        if failure.check(defer.CancelledError):
            return failure
        raise InspectorCannotListen(endpoint, failure.value)

    d.addCallbacks(lambda port: InspectorPage(inspector, site, port), refused)
    return d


class InspectorCannotListen(CannotListenError):
    """The inspector's page could not listen (its port is taken, say): the relay was not asked."""

    #: tells txhyco.endpoint this is not the relay's refusal
    inspector_page = True

    def __init__(self, endpoint: str, why) -> None:
        super().__init__(None, endpoint, why)
        self.endpoint = endpoint

    def __str__(self) -> str:
        why = getattr(self.socketError, "socketError", None) or self.socketError
        return f"the inspector cannot listen on {self.endpoint}: {str(why).rstrip('.')}"


def inspected_listen(reactor, hc, factory, options, *, keepalive: float, connections) -> defer.Deferred:
    """Listen on ``hc`` for an HTTP/1.1 ``factory`` with an inspector (``options``: its
    :class:`~txhyco.inspector.options.InspectOptions`) watching; the page starts first.

    Fires with the :class:`~txhyco.listener.port.RelayListeningPort`, whose
    ``inspector`` is the :class:`InspectorPage` (stopped with the port).
    """
    from txhyco.listener.http import serve_request
    from txhyco.listener.port import accept_with_factory, listen

    inspector = Inspector(reactor, hc, limit=options.limit, body_cap=options.body_cap)
    inspector.replay_factory = factory
    on_request = partial(serve_request, reactor, hc, factory, inspector=inspector)
    on_accept = partial(accept_with_factory, reactor, hc, factory, connections=connections, inspector=inspector)

    def page_ready(page: InspectorPage):
        d = listen(reactor, hc, factory, on_accept=on_accept, on_request=on_request, keepalive=keepalive,
                   connections=connections)

        def listening(port):
            port.companions.append(page)
            port.inspector = page
            log.info("inspector for {address} at {url}", address=str(hc.address), url=page.url)
            return port

        def failed(failure):
            page.stopListening()
            return failure

        d.addCallbacks(listening, failed)
        return d

    d = serve_inspector(reactor, inspector, options.endpoint)
    d.addCallback(page_ready)
    return d
