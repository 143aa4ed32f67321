"""Redirects and cookies stay inside the hybrid connection (http mode and ``txhyco listen --http``).

An application serves its hybrid connection as a site at its root, so its
redirects point at ``/dir/``; the listener puts the hybrid connection's
prefix back in front, and a client following them ends at a 200 through the
relay.
"""
from __future__ import annotations

import os
import socket
import sys

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, RedirectAgent, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File
from twisted.web.util import redirectTo

from tests.support.procs import Child
from tests.support.rawlistener import make_token
from tests.test_cli_tunnels import cli, stopped
from tests.test_endpoint import endpoint_string
from txhyco.listener.httplinks import LinkRewriter


@defer.inlineCallbacks
def get(agent, relay, path: str, target: str):
    """GET ``target`` through the relay; (response, body)."""
    headers = Headers({"ServiceBusAuthorization": [make_token(relay, path)]})
    response = yield agent.request(b"GET", f"http://{relay.host}{target}".encode(), headers)
    body = yield readBody(response)
    return response, body


def site_with_directory(tmp_path):
    (tmp_path / "sub").mkdir(parents=True)
    (tmp_path / "sub" / "index.html").write_bytes(b"inside sub\n")
    return tmp_path


class CookieAndRedirect(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.addCookie(b"session", b"s1", path=b"/")
        request.addCookie(b"scoped", b"s2", path=b"/area", httpOnly=True)
        return redirectTo(b"http://" + request.getHeader(b"host") + b"/landing?x=1", request)


@pytest_twisted.inlineCallbacks
def test_directory_redirect_of_a_twisted_web_site_is_followed_to_200(relay, both_site_paths, tmp_path):
    root = File(str(site_with_directory(tmp_path)))
    root.putChild(b"cookie", CookieAndRedirect())
    port = yield serverFromString(reactor, endpoint_string(relay, "files")).listen(Site(root))
    try:
        response, _ = yield get(Agent(reactor), relay, "files", "/files/sub")
        assert response.code in (301, 302)
        location = response.headers.getRawHeaders(b"location")[0].decode()
        assert location.endswith("/files/sub/"), location

        response, body = yield get(RedirectAgent(Agent(reactor)), relay, "files", "/files/sub")
        assert (response.code, body) == (200, b"inside sub\n")

        response, _ = yield get(Agent(reactor), relay, "files", "/files/cookie")
        assert response.headers.getRawHeaders(b"location") == [f"http://{relay.host}/files/landing?x=1".encode()]
        # Repeated headers travel joined with ", " in the protocol's JSON
        # (Hybrid Connections protocol, "Request message").
        cookies = b", ".join(response.headers.getRawHeaders(b"set-cookie"))
        assert b"session=s1; Path=/files" in cookies and b"scoped=s2; Path=/files/area; HttpOnly" in cookies, cookies
    finally:
        yield port.stopListening()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_twisted.inlineCallbacks
def test_python_http_server_behind_listen_http_redirects_inside(relay, tmp_path):
    site = site_with_directory(tmp_path)
    web_port = free_port()
    server = Child()
    reactor.spawnProcess(
        server, sys.executable,
        [sys.executable, "-u", "-m", "http.server", str(web_port), "--bind", "127.0.0.1", "--directory", str(site)],
        env=dict(os.environ), path=str(site),
    )
    site_with_directory(site / "app")  # the same site under a path: --http URL/app
    listener = cli("listen", "web", "--http", f"http://127.0.0.1:{web_port}", cs=relay.connection_string)
    under_path = cli("listen", "deep", "--http", f"http://127.0.0.1:{web_port}/app", "--host-header", "rewrite",
                     cs=relay.connection_string)
    try:
        yield server.wait_for("Serving HTTP")
        yield listener.wait_for("listening on")
        yield under_path.wait_for("listening on")
        response, _ = yield get(Agent(reactor), relay, "web", "/web/sub")
        assert response.code == 301
        assert response.headers.getRawHeaders(b"location") == [b"/web/sub/"]
        response, body = yield get(RedirectAgent(Agent(reactor)), relay, "web", "/web/sub")
        assert (response.code, body) == (200, b"inside sub\n")
        # The server sees /app/sub and answers /app/sub/: the listener maps it back to /deep/sub/.
        response, _ = yield get(Agent(reactor), relay, "deep", "/deep/sub")
        assert response.headers.getRawHeaders(b"location") == [b"/deep/sub/"]
        response, body = yield get(RedirectAgent(Agent(reactor)), relay, "deep", "/deep/sub")
        assert (response.code, body) == (200, b"inside sub\n")
    finally:
        yield stopped(listener)
        yield stopped(under_path)
        yield server.stop()


def test_upstream_links_under_the_url_path_become_site_relative():
    from txhyco.listener.httplinks import UpstreamLinks

    links = UpstreamLinks("/app", "127.0.0.1:8080")
    head = (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:8080/app/x?y=1\r\n"
            b"Set-Cookie: a=1; Path=/app\r\nContent-Location: /elsewhere\r\nX-Other: /app/z")
    assert links.response_head(head) == (b"HTTP/1.1 302 Found\r\nLocation: /x?y=1\r\n"
                                         b"Set-Cookie: a=1; Path=/\r\nContent-Location: /elsewhere\r\nX-Other: /app/z")
    assert links.header("location", "http://other:1/app/x") == "http://other:1/app/x"
    assert links.header("location", "/application") == "/application"


def test_links_elsewhere_are_left_alone():
    links = LinkRewriter("/hc", "relay.example:9090", "https")
    assert links.link("/a/b?c=1") == "/hc/a/b?c=1"
    assert links.link("/hc/already") == "/hc/already"
    assert links.link("/HC") == "/HC"
    assert links.link("/hcx") == "/hc/hcx"
    assert links.link("relative/x") == "relative/x"
    assert links.link("http://elsewhere.example/a") == "http://elsewhere.example/a"
    assert links.link("http://user@relay.example:9090/a") == "http://user@relay.example:9090/a"
    assert links.link("http://RELAY.example:9090/a#f") == "https://RELAY.example:9090/hc/a#f"
    assert links.cookie("k=v=/x; Path=/") == "k=v=/x; Path=/hc"
    assert links.cookie("k=v; Domain=x; path=/p") == "k=v; Domain=x; path=/hc/p"
    assert links.cookie("k=v") == "k=v"
