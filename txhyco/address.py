"""Naming a hybrid connection and how to reach it: namespace, path, credentials, trust."""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from txhyco.protocol.addresses import Namespace, encode_entity_path
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.errors import LocalProtocolError
from txhyco.protocol.proxy import ProxyPolicy
from txhyco.protocol.tokens import CallableTokenProvider, SasKeyTokenProvider, StaticTokenProvider, TokenProvider

CONNECTION_STRING_ENV = "HYCO_CONNECTION_STRING"


def peer_address(remote_endpoint):
    """The sender's address (``remoteEndpoint`` of an accept or request) as a Twisted address."""
    if remote_endpoint is None:
        return IPv4Address("TCP", "0.0.0.0", 0)
    cls = IPv6Address if ":" in remote_endpoint.address else IPv4Address
    return cls("TCP", remote_endpoint.address, remote_endpoint.port)


@implementer(IAddress)
@dataclass(frozen=True)
class HybridConnectionAddress:
    """The address of a relayed port (``getHost()``): a namespace and an entity path."""

    namespace: Namespace
    path: str

    @property
    def host(self) -> str:
        return self.namespace.host

    @property
    def port(self) -> int:
        return self.namespace.effective_port

    def __str__(self) -> str:
        scheme = "wss" if self.namespace.secure else "ws"
        return f"{scheme}://{self.namespace.authority}/$hc/{encode_entity_path(self.path)}"


@dataclass(frozen=True, repr=False)
class HybridConnection:
    """One hybrid connection: where it is, how to authorize, which CA to trust, which proxy to go through.

    ``proxy`` None means the process environment's proxy variables, read at each connection.
    """

    namespace: Namespace
    path: str
    token_provider: TokenProvider | None = None
    ca_file: str | None = None
    proxy: ProxyPolicy | None = None

    def __repr__(self) -> str:
        return f"HybridConnection({self.address})"

    @functools.cached_property
    def address(self) -> HybridConnectionAddress:
        # Built once: every relayed connection's getHost() is this (immutable) address.
        return HybridConnectionAddress(self.namespace, self.path)

    @property
    def audience(self) -> str:
        """The resource a token for this hybrid connection is signed for."""
        return f"http://{self.namespace.host}/{encode_entity_path(self.path)}"

    def get_token(self, reactor) -> defer.Deferred:
        """A fresh token from the provider (which may be async); None without one."""
        provider = self.token_provider
        if provider is None:
            return defer.succeed(None)

        def call():
            result = provider.get_token(self.audience, reactor.seconds())
            if inspect.isawaitable(result) and not isinstance(result, defer.Deferred):
                return defer.ensureDeferred(_await(result))
            return result

        return defer.maybeDeferred(call)

    def token_expiry(self, token: str) -> float | None:
        """When ``token`` expires, if its provider knows (an Entra ID credential's ``expires_on``)."""
        expiry_of = getattr(self.token_provider, "expiry_of", None)
        return expiry_of(token) if expiry_of is not None else None

    @classmethod
    def from_args(
        cls,
        *,
        connection_string: str | ConnectionString | None = None,
        namespace: str | Namespace | None = None,
        path: str | None = None,
        key_name: str | None = None,
        key: str | None = None,
        token: str | None = None,
        token_provider=None,
        credential=None,
        ca_file: str | None = None,
        secure: bool | None = None,
        proxy=None,
        environ=None,
    ) -> HybridConnection:
        """Build from a connection string or from parts; ``HYCO_CONNECTION_STRING`` if neither.

        ``token_provider`` may be a :class:`TokenProvider` or a callable taking
        the audience and returning a token or an awaitable of one.
        ``credential`` is an azure-identity credential, sync or async (Entra ID;
        see :mod:`txhyco._twisted.credential`), as is the one a connection
        string's ``Authentication=`` names. An explicit ``credential``,
        ``token_provider``, ``token`` or key replaces the connection string's.
        ``proxy`` is an HTTP proxy URL (``http://[user:password@]host:port``), ``"none"``
        or False for direct connections, or None (the default) for the
        proxy variables of ``environ`` as curl reads them
        (:mod:`txhyco.protocol.proxy`).
        """
        environ = os.environ if environ is None else environ
        proxy_policy = ProxyPolicy.from_setting(proxy, environ)
        if connection_string is None and namespace is None:
            connection_string = environ.get(CONNECTION_STRING_ENV)
            if not connection_string:
                raise LocalProtocolError(
                    "No relay given: pass connection_string=... or namespace=..., "
                    f"or set {CONNECTION_STRING_ENV}."
                )
        given = [name for name, value in (("credential", credential), ("token_provider", token_provider), ("token", token)) if value is not None]
        if key is not None or key_name is not None:
            given.append("key_name/key")
        if len(given) > 1:
            raise LocalProtocolError(f"Give one way to authenticate, not {' and '.join(given)}.")
        provider = None
        if connection_string is not None:
            if isinstance(connection_string, str):
                connection_string = ConnectionString.parse(connection_string)
            ns = connection_string.namespace
            path = path or connection_string.entity_path
            if connection_string.shared_access_key or connection_string.shared_access_signature:
                provider = connection_string.token_provider()
            elif connection_string.authentication and not given:
                from txhyco._twisted.credential import CredentialTokenProvider, credential_for

                provider = CredentialTokenProvider(credential_for(connection_string.authentication, connection_string.client_id))
        else:
            ns = namespace if isinstance(namespace, Namespace) else Namespace.parse(namespace, secure=True if secure is None else secure)
        if secure is not None and ns.secure != secure:
            ns = Namespace(ns.host, ns.port, secure)
        if not path or not path.strip("/"):
            raise LocalProtocolError("No hybrid connection path given: pass path=... or put EntityPath in the connection string.")
        if credential is not None:
            from txhyco._twisted.credential import CredentialTokenProvider

            provider = CredentialTokenProvider(credential)
        elif token_provider is not None:
            if _takes_scopes(getattr(token_provider, "get_token", None)):
                raise LocalProtocolError(
                    f"{type(token_provider).__name__} looks like an azure-identity credential "
                    "(get_token(*scopes)): pass it as credential=, not token_provider=."
                )
            provider = token_provider if hasattr(token_provider, "get_token") else CallableTokenProvider(token_provider)
        elif token is not None:
            provider = StaticTokenProvider(token)
        elif key is not None or key_name is not None:
            if not (key and key_name):
                raise LocalProtocolError("Give both key_name and key (a SAS rule name and its key).")
            provider = SasKeyTokenProvider(key_name, key)
        return cls(ns, path.strip("/"), provider, ca_file, proxy_policy)


def _takes_scopes(get_token) -> bool:
    """True for azure-identity's ``get_token(*scopes, ...)`` (a token provider's is ``(audience, now)``)."""
    if not callable(get_token):
        return False
    try:
        parameters = inspect.signature(get_token).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


async def _await(awaitable):
    return await awaitable
