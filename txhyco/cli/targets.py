"""What ``--forward`` names: a TCP address, any Twisted endpoint, or a UDP address.

``listen --forward`` takes the service each relayed connection goes to:

* ``PORT`` — ``127.0.0.1:PORT``;
* ``HOST:PORT`` (``[v6]:PORT``) — TCP, the host name resolved as Twisted's
  ``HostnameEndpoint`` does (IPv4 and IPv6, happy eyeballs);
* any Twisted *client* endpoint string — ``unix:path=/run/app.sock``,
  ``tcp:host=db:port=5432``, ``tls:example.com:443`` (parsed by
  ``clientFromString``);
* ``udp:HOST:PORT`` — UDP forwarding (:mod:`txhyco.cli.udp`).

``connect --forward`` takes where to accept local connections:

* ``PORT`` — ``127.0.0.1:PORT`` (0 picks a free port);
* ``HOST:PORT`` — TCP on that interface;
* any Twisted *server* endpoint string — ``unix:/tmp/db.sock``,
  ``tcp6:5432:interface=\\:\\:1``, ``ssl:...`` (parsed by ``serverFromString``);
* ``udp:PORT`` or ``udp:HOST:PORT`` — UDP forwarding.
"""
from __future__ import annotations

from dataclasses import dataclass

from .common import CliError, host_port

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    """A parsed ``--forward``: ``kind`` is ``tcp``, ``endpoint`` or ``udp``."""

    kind: str
    text: str
    host: str = ""
    port: int = 0

    def describe(self) -> str:
        if self.kind == "endpoint":
            return self.text
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"udp:{address}" if self.kind == "udp" else address


def _looks_like_host_port(text: str) -> bool:
    """``PORT``, ``HOST:PORT`` or ``[v6]:PORT`` rather than an endpoint string."""
    if text.isdigit():
        return True
    host, sep, port = text.rpartition(":")
    if not sep:  # no endpoint string lacks a colon: a host without its port
        return True
    if "=" in text:
        return False
    if host.startswith("[") and host.endswith("]"):
        return True
    return ":" not in host and (port.isdigit() or not port)


def parse_target(text: str, *, listening: bool, option: str = "--forward") -> Target:
    """``text`` as a :class:`Target`; ``listening`` for ``connect`` (a local bind), else ``listen``."""
    text = text.strip()
    if not text:
        raise CliError(f"{option} is empty: give [HOST:]PORT or an endpoint string.", 2)
    if text.lower().startswith("udp:"):
        host, port = host_port(text[4:], default_host=DEFAULT_HOST, option=option)
        if not listening and port == 0:
            raise CliError(f"{option} {text!r}: port 0 cannot be sent to.", 2)
        return Target("udp", text, host, port)
    if ":" not in text and not text.isdigit():
        raise CliError(f"{option} {text!r} has no port: write PORT, HOST:PORT (e.g. 127.0.0.1:5432) "
                       "or an endpoint string (e.g. unix:path=/run/app.sock).", 2)
    if _looks_like_host_port(text):
        host, port = host_port(text, default_host=DEFAULT_HOST, option=option)
        if not listening and port == 0:
            raise CliError(f"{option} {text!r}: port 0 cannot be connected to.", 2)
        return Target("tcp", text, host, port)
    check_endpoint_string(text, listening=listening, option=option)
    return Target("endpoint", text)


def check_endpoint_string(text: str, *, listening: bool, option: str) -> None:
    """A usage error naming Twisted's complaint unless ``text`` parses as an endpoint string."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import clientFromString, serverFromString

    kind, parse = ("server", serverFromString) if listening else ("client", clientFromString)
    try:
        parse(reactor, text)
    except Exception as e:  # Twisted raises ValueError, TypeError, KeyError... for bad strings
        reason = " ".join(str(e).split()) or e.__class__.__name__
        example = "unix:/tmp/db.sock" if listening else "unix:path=/run/app.sock"
        raise CliError(
            f"{option} {text!r} is neither [HOST:]PORT nor a Twisted {kind} endpoint string "
            f"(e.g. {example}): {reason}.",
            2,
        ) from None


def client_endpoint(reactor, target: Target):
    """The Twisted client endpoint that reaches ``target`` (``tcp`` or ``endpoint``)."""
    from twisted.internet.endpoints import HostnameEndpoint, clientFromString

    if target.kind == "endpoint":
        return clientFromString(reactor, target.text)
    return HostnameEndpoint(reactor, target.host, target.port, timeout=10)


def server_endpoint(reactor, target: Target):
    """The Twisted server endpoint that accepts local connections for ``target``."""
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString

    if target.kind == "endpoint":
        return serverFromString(reactor, target.text)
    endpoint_class = TCP6ServerEndpoint if ":" in target.host else TCP4ServerEndpoint
    return endpoint_class(reactor, target.port, interface=target.host)


def describe_address(address) -> str:
    """A bound or peer address as text: ``HOST:PORT``, ``[v6]:PORT``, ``unix:/path``."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"unix:{name}" if name else "unix:(unnamed)"
    return str(address)
