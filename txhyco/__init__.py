"""txhyco: Azure Relay Hybrid Connections for Twisted and Autobahn.

The public API is the handful of names below; modules behind them are
implementation. The sans-IO protocol core is :mod:`txhyco.protocol`, the local
relay :mod:`txhyco.relay`, and an in-process relay for tests
:mod:`txhyco.testing`.
"""
from .helpers import (
    append_relay_token,
    create_relay_base_uri,
    create_relay_http_uri,
    create_relay_listen_uri,
    create_relay_send_uri,
    create_relay_token,
)
from .protocol import (
    CallableTokenProvider,
    ConnectionString,
    LocalProtocolError,
    Namespace,
    ProtocolError,
    RemoteProtocolError,
    Rights,
    SasKeyTokenProvider,
    SasRule,
    StaticTokenProvider,
    TokenProvider,
)

__version__ = "0.1.0.dev0"

# Names that need Twisted or Autobahn load on first use, so that importing
# txhyco (as the twisted/plugins drop-ins do) stays light.
_LAZY = {
    "HybridConnection": "txhyco.address",
    "HybridConnectionAddress": "txhyco.address",
    "HybridConnectionClientEndpoint": "txhyco.endpoint",
    "HybridConnectionServerEndpoint": "txhyco.endpoint",
    "ProxyError": "txhyco.errors",
    "RelayError": "txhyco.errors",
    "RelayHandshakeError": "txhyco.errors",
    "RelayProtocolError": "txhyco.errors",
    "RelayRefused": "txhyco.errors",
    "RelaySettingError": "txhyco.errors",
    "RelayUnreachable": "txhyco.errors",
    "RelayedClientFactory": "txhyco.websocket",
    "RelayedServerFactory": "txhyco.websocket",
    "connect_relay": "txhyco.websocket",
    "close_credential": "txhyco._twisted.credential",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'txhyco' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "CallableTokenProvider",
    "ConnectionString",
    "HybridConnection",
    "HybridConnectionAddress",
    "HybridConnectionClientEndpoint",
    "HybridConnectionServerEndpoint",
    "LocalProtocolError",
    "Namespace",
    "ProtocolError",
    "ProxyError",
    "RelayError",
    "RelayHandshakeError",
    "RelayProtocolError",
    "RelayRefused",
    "RelaySettingError",
    "RelayUnreachable",
    "RelayedClientFactory",
    "RelayedServerFactory",
    "RemoteProtocolError",
    "Rights",
    "SasKeyTokenProvider",
    "SasRule",
    "StaticTokenProvider",
    "TokenProvider",
    "append_relay_token",
    "close_credential",
    "connect_relay",
    "create_relay_base_uri",
    "create_relay_http_uri",
    "create_relay_listen_uri",
    "create_relay_send_uri",
    "create_relay_token",
]
