"""Links in a response kept inside the hybrid connection, as a reverse proxy keeps them.

An application behind a listener serves its hybrid connection as a site at its
root (:func:`txhyco.protocol.addresses.relative_target`): asked for
``/myhc/examples`` it sees ``/examples``, and a redirect it answers with
points at ``/examples/`` or ``http://relay-host/examples/`` — outside the
hybrid connection, where the relay answers 404 or 401. Like a reverse
proxy's "ProxyPassReverse", the listener puts the hybrid connection's prefix
back in front of such links: ``Location`` and ``Content-Location`` that are an
absolute path, or an absolute URL naming the host the application was told
(the synthetic request's ``Host``), and a ``Set-Cookie``'s ``Path``.

Links already under the prefix (an application that honours
``X-Forwarded-Prefix``), relative ones and those to other hosts are left as
they are.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from txhyco.protocol.addresses import encode_entity_path

#: response headers whose value is a URI reference to rewrite
LINK_HEADERS = frozenset({"location", "content-location"})
COOKIE_HEADER = "set-cookie"
REWRITTEN = LINK_HEADERS | {COOKIE_HEADER}


class LinkRewriter:
    """Rewrites the link-bearing headers of one hybrid connection's responses.

    :param prefix: the hybrid connection's path as the sender writes it (``/myhc``).
    :param host: the ``Host`` the application was given.
    :param scheme: how the sender reached the relay (``https`` or ``http``).
    """

    @classmethod
    def for_request(cls, hc, request) -> LinkRewriter:
        """The rewriter for ``request`` (a relayed :class:`~txhyco.protocol.messages.Request`) on ``hc``."""
        ns = hc.namespace
        host = request.request_headers.get("Host") or ns.authority  # as the synthetic request has it
        return cls("/" + encode_entity_path(hc.path), host, "https" if ns.secure else "http")

    def __init__(self, prefix: str, host: str, scheme: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.host = host.lower()
        self.scheme = scheme

    def header(self, lower_name: str, value: str) -> str:
        """``value`` of the header named ``lower_name`` (lowercase), rewritten where it links home."""
        if lower_name == COOKIE_HEADER:
            return self.cookie(value)
        return self.link(value)

    def link(self, value: str) -> str:
        if value.startswith("/"):
            if value.startswith("//"):  # a network-path reference: another host, maybe
                return self._absolute(self.scheme + ":" + value, value)
            return self._under_prefix(value)
        if value[:7].lower() == "http://" or value[:8].lower() == "https://":
            return self._absolute(value, value)
        return value

    def cookie(self, value: str) -> str:
        """A ``Set-Cookie`` value with its ``Path`` attribute under the prefix (the cookie itself untouched)."""
        parts = value.split(";")
        for i in range(1, len(parts)):
            name, sep, path = parts[i].partition("=")
            if sep and name.strip().lower() == "path" and path.strip().startswith("/"):
                path = path.strip()
                new = self.prefix if path == "/" else self._under_prefix(path)
                parts[i] = f"{name}={new}"
        return ";".join(parts)

    def _absolute(self, url: str, original: str) -> str:
        try:
            parts = urlsplit(url)
            netloc = parts.netloc
        except ValueError:
            return original
        if netloc.lower() != self.host or "@" in netloc:
            return original
        path = self._under_prefix(parts.path or "/")
        rest = (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
        return f"{self.scheme}://{netloc}{path}{rest}"

    def _under_prefix(self, path: str) -> str:
        folded, prefix = path.lower(), self.prefix.lower()
        if folded == prefix or folded.startswith(prefix + "/") or folded.startswith(prefix + "?"):
            return path  # already inside: the application knew its prefix
        return self.prefix + path


class UpstreamLinks:
    """For a web server reached under a path (``listen --http http://host/app``): its links made site-relative.

    The server sees ``/app/sub`` for the sender's ``/web/sub``; its answer's
    ``Location: /app/sub/`` (or ``http://HOST/app/sub/`` with the Host it was
    sent) becomes ``/sub/``, and a cookie's ``Path=/app`` becomes ``Path=/``,
    which :class:`LinkRewriter` then puts under the hybrid connection.

    :param prefix: the URL's path (``/app``, or empty).
    :param host: the Host header the web server was sent.
    """

    def __init__(self, prefix: str, host: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.host = host.lower()

    def header(self, lower_name: str, value: str) -> str:
        if lower_name == COOKIE_HEADER:
            parts = value.split(";")
            for i in range(1, len(parts)):
                name, sep, path = parts[i].partition("=")
                if sep and name.strip().lower() == "path":
                    parts[i] = f"{name}={self._site_path(path.strip())}"
            return ";".join(parts)
        if value[:7].lower() == "http://" or value[:8].lower() == "https://":
            try:
                parts = urlsplit(value)
            except ValueError:
                return value
            if parts.netloc.lower() != self.host:
                return value
            value = (parts.path or "/") + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
        if value.startswith("/") and not value.startswith("//"):
            return self._site_path(value)
        return value

    def _site_path(self, path: str) -> str:
        if not self.prefix or not path.startswith("/"):
            return path
        if path == self.prefix or path.startswith(self.prefix + "?"):
            return "/" + path[len(self.prefix):]
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix):]
        return path

    def response_head(self, head: bytes) -> bytes:
        """A response head (up to its blank line) with its link-bearing headers made site-relative."""
        lines = head.split(b"\r\n")
        for i in range(1, len(lines)):
            name, sep, value = lines[i].partition(b":")
            lower = name.strip().lower().decode("latin-1")
            if sep and lower in REWRITTEN:
                text = value.strip().decode("latin-1")
                lines[i] = name + b": " + self.header(lower, text).encode("latin-1")
        return b"\r\n".join(lines)
