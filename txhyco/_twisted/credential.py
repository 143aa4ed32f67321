"""Entra ID (Azure AD) credentials as token providers: any azure-identity credential, sync or async.

Azure Relay takes an Entra ID access token for the scope
``https://relay.azure.net/.default`` wherever it takes a SAS token, sent raw (no
``Bearer``) in the ``ServiceBusAuthorization`` header or the ``sb-hc-token``
parameter, as Microsoft.Azure.Relay's managed-identity token provider does
(Microsoft's "Authenticate a managed identity with Microsoft Entra ID to access
Azure Relay resources"). A listener renews it with ``renewToken`` before
``expires_on`` like any other token (:mod:`txhyco.listener.renewal`).

Credentials block (a sync ``TokenCredential`` makes HTTP requests on the
calling thread) or need an asyncio loop (an ``AsyncTokenCredential`` from
``azure.identity.aio`` runs on aiohttp), and the reactor may be neither:

- a sync credential's ``get_token`` runs in the reactor's thread pool;
- an async one runs on the reactor's own asyncio loop when the reactor is
  Twisted's ``asyncioreactor``, otherwise on one private asyncio loop in a
  daemon thread, shared by every async credential of the process (an aiohttp
  session stays bound to the loop that made it) and stopped at reactor shutdown.

azure-identity is an optional dependency (``pip install 'txhyco[azure]'``),
imported only to build the credential a connection string's
``Authentication=`` names.
"""
from __future__ import annotations

import asyncio
import inspect
import threading

from twisted.internet import defer, threads

from txhyco.errors import RelayCredentialError
from txhyco.protocol.errors import LocalProtocolError

#: The scope Azure Relay's tokens are requested for.
RELAY_SCOPE = "https://relay.azure.net/.default"
INSTALL_HINT = "pip install 'txhyco[azure]'"


def azure_identity():
    """The ``azure.identity`` module, or a LocalProtocolError saying how to install it."""
    try:
        import azure.identity
    except ImportError:
        raise LocalProtocolError(
            f"Entra ID authentication needs the azure-identity package: {INSTALL_HINT}."
        ) from None
    return azure.identity


def credential_for(authentication: str, client_id: str | None = None):
    """The azure-identity credential a connection string's ``Authentication=`` (and ``ClientId=``) names."""
    identity = azure_identity()
    if authentication == "ManagedIdentity":
        return identity.ManagedIdentityCredential(client_id=client_id) if client_id else identity.ManagedIdentityCredential()
    if authentication == "Default":
        return identity.DefaultAzureCredential()
    raise LocalProtocolError(f"Unknown Authentication {authentication!r}.")


def is_async_credential(credential) -> bool:
    """True for an AsyncTokenCredential (``get_token`` is a coroutine function)."""
    return inspect.iscoroutinefunction(getattr(credential, "get_token", None))


def _describe(credential) -> str:
    return type(credential).__name__


class _PrivateLoop:
    """One asyncio loop in a daemon thread for async credentials when the reactor has no loop of its own."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls, reactor) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="txhyco-credential-loop", daemon=True)
                thread.start()
                cls._loop = loop
                reactor.addSystemEventTrigger("during", "shutdown", cls._stop, loop, thread)
            return cls._loop

    @classmethod
    def _stop(cls, loop, thread) -> None:
        with cls._lock:
            if cls._loop is loop:
                cls._loop = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()


def _run_on_private_loop(reactor, coroutine) -> defer.Deferred:
    future = asyncio.run_coroutine_threadsafe(coroutine, _PrivateLoop.get(reactor))
    d = defer.Deferred(lambda _: future.cancel())

    def deliver(done) -> None:
        if d.called:  # cancelled meanwhile
            return
        if done.cancelled():
            d.errback(defer.CancelledError())
        elif done.exception() is not None:
            d.errback(done.exception())
        else:
            d.callback(done.result())

    future.add_done_callback(lambda done: reactor.callFromThread(deliver, done))
    return d


def _asyncio_loop_of(reactor):
    """The asyncio loop ``reactor`` runs on (Twisted's asyncioreactor), or None."""
    try:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    except ImportError:  # pragma: no cover - part of Twisted since 16.x
        return None
    if isinstance(reactor, AsyncioSelectorReactor):
        return reactor._asyncioEventloop
    return None


def _run_async(reactor, coroutine) -> defer.Deferred:
    """Run ``coroutine`` where async credentials run (see the module doc); fires with its result."""
    loop = _asyncio_loop_of(reactor)
    if loop is not None:
        return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine, loop=loop))
    return _run_on_private_loop(reactor, coroutine)


def close_credential(credential, reactor=None) -> defer.Deferred:
    """Close ``credential`` (its HTTP sessions) on the loop or thread its tokens were fetched on.

    An async credential's ``close()`` must run on the asyncio loop it used,
    which txhyco chose; a sync one's runs in the thread pool. Fires when done.
    """
    if reactor is None:
        from twisted.internet import reactor
    close = getattr(credential, "close", None)
    if close is None:
        return defer.succeed(None)
    if inspect.iscoroutinefunction(close):
        return _run_async(reactor, close())
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), close)


class CredentialTokenProvider:
    """A token provider backed by an azure-identity credential (``get_token(*scopes)`` -> AccessToken).

    ``get_token(audience, now)`` ignores the audience (Entra ID tokens are for
    the relay service as a whole; roles say which hybrid connections) and
    returns a Deferred that fires with the raw JWT. :meth:`expiry_of` gives the
    credential's ``expires_on`` for the tokens it returned, which renewal uses.
    """

    __slots__ = ("credential", "reactor", "_expiries")

    def __init__(self, credential, reactor=None) -> None:
        if not callable(getattr(credential, "get_token", None)):
            raise LocalProtocolError(
                f"credential must be an azure-identity credential (with get_token(*scopes)), not {type(credential).__name__}."
            )
        self.credential = credential
        self.reactor = reactor
        self._expiries: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"CredentialTokenProvider({_describe(self.credential)})"

    def _reactor(self):
        if self.reactor is None:
            from twisted.internet import reactor

            return reactor
        return self.reactor

    def get_token(self, audience: str, now: float) -> defer.Deferred:
        reactor = self._reactor()
        if is_async_credential(self.credential):
            d = _run_async(reactor, self.credential.get_token(RELAY_SCOPE))
        else:
            d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.credential.get_token, RELAY_SCOPE)
        return d.addCallbacks(self._got, self._failed)

    def _got(self, access_token) -> str:
        token = getattr(access_token, "token", None)
        expires_on = getattr(access_token, "expires_on", None)
        if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
            raise RelayCredentialError(
                f"The Entra ID credential ({_describe(self.credential)}) returned no usable access token."
            )
        token = token.strip()
        if isinstance(expires_on, (int, float)) and not isinstance(expires_on, bool):
            if len(self._expiries) >= 8:
                self._expiries.pop(next(iter(self._expiries)))
            self._expiries[token] = float(expires_on)
        return token

    def _failed(self, failure):
        if failure.check(defer.CancelledError, RelayCredentialError):
            return failure
        # azure-identity's messages say which sources it tried and why each failed; they hold no secrets.
        why = " ".join(str(failure.value).split()).rstrip(".") or type(failure.value).__name__
        raise RelayCredentialError(
            f"The Entra ID credential ({_describe(self.credential)}) could not get a token for {RELAY_SCOPE}: {why}."
        )

    def expiry_of(self, token: str) -> float | None:
        """``expires_on`` of a token this provider returned (None if unknown)."""
        return self._expiries.get(token)
