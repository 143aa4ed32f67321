"""Outbound HTTP proxies as pure logic: proxy URLs, curl's environment variables, ``NO_PROXY``, CONNECT.

A connection toward a relay through a proxy opens a TCP connection to the
proxy, asks it for a tunnel with ``CONNECT host:port`` (RFC 9110 §9.3.6),
and, once the proxy answers 2xx, speaks to the relay inside the tunnel (TLS
included, verified against the relay's name). This module decides which
proxy applies, builds the CONNECT request and reads the proxy's answer
(with h11); :mod:`txhyco._twisted.proxytunnel` does the I/O.

Which proxy applies, as curl decides it (its ``libcurl-env`` manual page):

- an explicit setting wins: a proxy URL (used for every relay connection,
  ``NO_PROXY`` not consulted) or "none" (direct, the environment ignored);
- else ``https_proxy``/``HTTPS_PROXY`` for ``wss``/``https`` and
  ``http_proxy``/``HTTP_PROXY`` for ``ws``/``http``, then
  ``all_proxy``/``ALL_PROXY``; the lower-case name wins over the upper-case
  one. (curl ignores upper-case ``HTTP_PROXY``, a guard for CGI programs,
  which txhyco is not; txhyco reads it.) An empty value counts as unset;
- unless ``no_proxy``/``NO_PROXY`` names the relay's host: ``*`` (every
  host), a name (that host and every host under it: ``example.com`` and
  ``.example.com`` both match ``relay.example.com``), an IP address, or a
  CIDR range (``10.0.0.0/8``, ``fd00::/8``), separated by commas or spaces.

Proxy URLs are ``http://[user:password@]host[:port]``; the port defaults
to 1080 as in curl, and a URL without a scheme means ``http://``. User and
password may be percent-encoded; they travel only to the proxy, as
``Proxy-Authorization: Basic`` (RFC 7617), and appear in no ``repr``, log
line or error message. ``https://`` proxies (TLS to the proxy itself) and
SOCKS proxies are refused with a sentence saying so.
"""
from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote

import h11

from .errors import LocalProtocolError, RemoteProtocolError

#: The port of a proxy URL that names none: curl's default.
DEFAULT_PROXY_PORT = 1080

#: The variables read for each kind of relay connection, in order; the first set one wins.
_SECURE_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
_PLAIN_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
_NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
#: Every variable a :class:`ProxyPolicy` keeps from the environment.
ENVIRONMENT_VARIABLES = tuple(dict.fromkeys(_SECURE_VARIABLES + _PLAIN_VARIABLES + _NO_PROXY_VARIABLES))

#: Bytes a proxy's answer to CONNECT may take before its head ends.
MAX_CONNECT_RESPONSE_HEAD = 16 * 1024

_HOST_TEXT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=%-]+$")


class ProxyURLError(LocalProtocolError):
    """A proxy URL that cannot be used; the message names it without its credentials."""


@dataclass(frozen=True, repr=False)
class ProxyURL:
    """An HTTP proxy: where it is and, optionally, the Basic credentials it wants.

    ``str()`` and ``repr()`` show it without the credentials (:attr:`display`).
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def display(self) -> str:
        """``http://host:port``: the proxy named for people, never with its credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        hidden = " (with credentials)" if self.has_credentials else ""
        return f"ProxyURL({self.display!r}{hidden})"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (Basic, RFC 7617), or None without credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode("utf-8")
        return "Basic " + base64.b64encode(pair).decode("ascii")

    @classmethod
    def parse(cls, text: str, *, source: str = "the proxy URL") -> ProxyURL:
        """Parse ``[http://][user[:password]@]host[:port][/]``; :class:`ProxyURLError` if it cannot be used.

        ``source`` names where the text came from (``--proxy``, ``HTTPS_PROXY``)
        in the error; the error never repeats the credentials.
        """
        if not isinstance(text, str):
            raise ProxyURLError(f"{source} must be a string such as http://proxy.example.com:3128.")
        raw = text.strip()
        scheme, sep, rest = raw.partition("://")
        if not sep:
            scheme, rest = "http", raw
        scheme = scheme.lower()
        userinfo, at, hostport = rest.rpartition("@")
        shown = f"{scheme}://{hostport}" if sep else hostport
        if any(not (32 < ord(c) < 127) for c in raw):
            raise ProxyURLError(f"{source} ({_clean(shown)}) holds spaces, control or non-ASCII characters.")
        if scheme == "https":
            raise ProxyURLError(
                f"{source} ({shown}) is an https:// proxy (TLS to the proxy itself), which txhyco does not "
                "support: use its http:// address; the relay's own TLS runs inside the tunnel either way."
            )
        if scheme != "http":
            raise ProxyURLError(f"{source} ({shown}) uses {scheme}://; txhyco supports only http:// proxies (HTTP CONNECT).")
        hostport, slash, tail = hostport.partition("/")
        shown = f"http://{hostport}"
        if tail or "?" in hostport or "#" in hostport:
            raise ProxyURLError(f"{source} ({shown}/...) has a path, query or fragment; a proxy URL is http://host:port.")
        host, port = _split_host_port(hostport, source, shown)
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            try:
                username = unquote(user, errors="strict") if user else ""
                password = unquote(secret, errors="strict") if colon else None
            except UnicodeDecodeError:
                raise ProxyURLError(f"{source} ({shown}) has credentials whose %-escapes are not UTF-8.") from None
            if not username:
                raise ProxyURLError(f"{source} ({shown}) has credentials without a user name.")
        return cls(host, port, username, password)


def _clean(text: str) -> str:
    return "".join(c if 32 < ord(c) < 127 else "?" for c in text)


def _split_host_port(hostport: str, source: str, shown: str) -> tuple[str, int]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, rest = hostport[1:end], hostport[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ProxyURLError(f"{source} ({shown}) has a malformed [IPv6] host.")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ProxyURLError(f"{source} ({shown}) has a malformed [IPv6] host.") from None
        port_text = rest[1:] if rest else ""
    else:
        host, colon, port_text = hostport.partition(":")
        if colon and not port_text:
            raise ProxyURLError(f"{source} ({shown}) ends in ':' without a port.")
        if ":" in port_text:
            raise ProxyURLError(f"{source} ({shown}): write an IPv6 proxy address in brackets, http://[::1]:3128.")
    if not host or not _HOST_TEXT.match(host.replace(":", "")):
        raise ProxyURLError(f"{source} ({shown}) has no valid host name.")
    if not port_text:
        return host.lower(), DEFAULT_PROXY_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
        # (Not shown: a URL missing its host may hold a password where the port would be.)
        raise ProxyURLError(f"{source} (http://{host}:...) has no valid port (1-65535).")
    return host.lower(), int(port_text)


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """Whether ``host`` is named by a ``NO_PROXY`` list (see the module doc); unparseable entries name nothing."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[\s,]+", no_proxy.strip().lower()):
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


@dataclass(frozen=True, repr=False)
class ProxyPolicy:
    """Which proxy each connection toward a relay goes through (see the module doc).

    Build one with :meth:`from_setting`. ``repr()`` names the proxy without
    credentials and never shows the environment it read.
    """

    explicit: ProxyURL | None = None
    use_environment: bool = True
    environment: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        if self.explicit is not None:
            return f"ProxyPolicy(proxy={self.explicit!r})"
        if not self.use_environment:
            return "ProxyPolicy(direct)"
        names = ", ".join(name for name, _ in self.environment)
        return f"ProxyPolicy(environment: {names or 'no proxy variables set'})"

    @classmethod
    def direct(cls) -> ProxyPolicy:
        """No proxy, whatever the environment says."""
        return cls(use_environment=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ProxyPolicy:
        """The proxy variables of ``environ`` (a snapshot: later changes to it are not seen)."""
        kept = tuple((name, environ[name]) for name in ENVIRONMENT_VARIABLES if environ.get(name, "").strip())
        return cls(environment=kept)

    @classmethod
    def from_setting(cls, setting, environ: Mapping[str, str]) -> ProxyPolicy:
        """The policy for a ``proxy=`` argument.

        ``None``: the environment; ``False`` or ``"none"``: direct; a URL
        string or :class:`ProxyURL`: that proxy for every connection; a
        mapping with ``host`` and ``port`` (Autobahn's own ``proxy=`` form):
        that proxy; a :class:`ProxyPolicy`: itself.
        """
        if setting is None:
            return cls.from_environment(environ)
        if isinstance(setting, ProxyPolicy):
            return setting
        if setting is False or (isinstance(setting, str) and setting.strip().lower() == "none"):
            return cls.direct()
        if isinstance(setting, ProxyURL):
            return cls(explicit=setting, use_environment=False)
        if isinstance(setting, Mapping) and set(setting) == {"host", "port"}:
            port = setting["port"]
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535 or not isinstance(setting["host"], str):
                raise ProxyURLError("proxy= as a mapping needs a host name (str) and a port (int, 1-65535).")
            host = setting["host"]
            text = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            return cls(explicit=ProxyURL.parse(text, source="proxy="), use_environment=False)
        if isinstance(setting, str):
            if not setting.strip():
                raise ProxyURLError("proxy= is empty: give a URL such as http://proxy.example.com:3128, or 'none' for no proxy.")
            return cls(explicit=ProxyURL.parse(setting, source="proxy="), use_environment=False)
        raise ProxyURLError(
            f"proxy= must be a URL such as http://proxy.example.com:3128, 'none', False or None, not {type(setting).__name__}."
        )

    def proxy_for(self, host: str, *, secure: bool) -> ProxyURL | None:
        """The proxy a connection to ``host`` (``secure``: wss/https) goes through, or None for direct.

        Raises :class:`ProxyURLError` when the environment's proxy URL cannot be used.
        """
        if self.explicit is not None:
            return self.explicit
        if not self.use_environment:
            return None
        env = dict(self.environment)
        for name in _NO_PROXY_VARIABLES:
            if env.get(name, "").strip():
                if no_proxy_matches(host, env[name]):
                    return None
                break
        for name in _SECURE_VARIABLES if secure else _PLAIN_VARIABLES:
            value = env.get(name, "").strip()
            if value:
                return ProxyURL.parse(value, source=name)
        return None


def connect_request(proxy: ProxyURL, host: str, port: int) -> bytes:
    """The ``CONNECT host:port`` request for ``proxy`` (RFC 9110 §9.3.6), with its Basic credentials if any."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    headers = [("Host", authority)]
    authorization = proxy.authorization()
    if authorization is not None:
        headers.append(("Proxy-Authorization", authorization))
    conn = h11.Connection(h11.CLIENT)
    try:
        return conn.send(h11.Request(method="CONNECT", target=authority, headers=headers))
    except h11.LocalProtocolError as e:
        raise LocalProtocolError(f"Cannot ask a proxy for a tunnel to {authority!r}: {e}.") from None


@dataclass(frozen=True)
class ConnectAnswer:
    """The proxy's answer to CONNECT: its status and reason, and any bytes after its head."""

    status: int
    reason: str
    leftover: bytes = b""

    @property
    def established(self) -> bool:
        return 200 <= self.status < 300


class ConnectResponseReader:
    """Reads a proxy's answer to our CONNECT with h11.

    :meth:`receive` takes bytes as they arrive and returns None while the
    head is incomplete, then a :class:`ConnectAnswer`. A malformed or
    oversized head raises :class:`RemoteProtocolError`.
    """

    def __init__(self, host: str, port: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_CONNECT_RESPONSE_HEAD)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # h11 reads the answer in the light of the request it belongs to.
        self._conn.send(h11.Request(method="CONNECT", target=authority, headers=[("Host", authority)]))
        self.answer: ConnectAnswer | None = None

    def receive(self, data: bytes) -> ConnectAnswer | None:
        if self.answer is not None:
            return self.answer
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                raise RemoteProtocolError(f"the proxy's answer to CONNECT is not valid HTTP ({e})", 502) from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.InformationalResponse):
                continue  # 1xx before the real answer
            if isinstance(event, h11.Response):
                reason = event.reason.decode("latin-1", "replace")
                reason = "".join(c if c.isprintable() else "?" for c in reason)[:200]
                leftover = b""
                if 200 <= event.status_code < 300:
                    leftover = bytes(self._conn.trailing_data[0])
                self.answer = ConnectAnswer(event.status_code, reason, leftover)
                return self.answer
            raise RemoteProtocolError(f"the proxy's answer to CONNECT is not valid HTTP (got {type(event).__name__})", 502)
