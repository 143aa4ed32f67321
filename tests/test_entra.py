"""Entra ID through the local relay: credentials (sync and async) on listeners and senders, JWTs
over WebSocket and HTTP, renewal across short lifetimes, and every refusal the relay makes."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, reactor, threads
from twisted.web import resource, server

from tests.support.entra import AsyncMintingCredential, MintingCredential, mint, relay_config, signing_key
from tests.support.faults import wait_for
from tests.support.httpclient import http_request
from tests.support.procs import ROOT
from txhyco import close_credential
from txhyco.endpoint import HybridConnectionServerEndpoint
from txhyco.errors import RelayCredentialError, RelayRefused
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay

LISTENER, SENDER, OWNER, NOBODY = (str(uuid.UUID(int=n)) for n in (1, 2, 3, 4))


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Client(WebSocketClientProtocol):
    def onOpen(self):
        self.replies = defer.DeferredQueue()

    def onMessage(self, payload, isBinary):
        self.replies.put(payload)


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        # The relay consumes the token; the listener never sees it.
        leaked = request.getHeader(b"servicebusauthorization") or request.getHeader(b"authorization") or b"sb-hc-token" in request.uri
        return b"token leaked" if leaked else b"hello"


@pytest.fixture
def entra_relay(tmp_path):
    config = relay_config(tmp_path, [(LISTENER, "Listener", "*"), (SENDER, "Sender", "echo"),
                                     (SENDER, "Azure Relay Sender", "web"), (OWNER, "Owner", "*")], leeway=1)
    running = pytest_twisted.blockon(start_relay(config))
    yield running
    pytest_twisted.blockon(running.stop())


def no_keys(relay) -> str:
    """The relay's connection string without SAS credentials: tokens come from a credential."""
    return f"Endpoint={relay.connection_string.endpoint};UseDevelopmentEmulator=true"


@pytest_twisted.inlineCallbacks
def test_websocket_listener_and_sender_with_credentials(entra_relay):
    listener_credential = MintingCredential(LISTENER)
    sender_credential = AsyncMintingCredential(SENDER, kind="ES256")
    factory = RelayedServerFactory(no_keys(entra_relay), path="echo", credential=listener_credential)
    factory.protocol = Echo
    port = yield factory.listen()
    try:
        client = yield connect_relay(Client, no_keys(entra_relay), path="echo", credential=sender_credential)
        client.sendMessage(b"through Entra ID")
        assert (yield client.replies.get()) == b"through Entra ID"
        client.sendClose()
        # sb-hc-token works as well as the header
        client = yield connect_relay(Client, no_keys(entra_relay), path="echo", credential=sender_credential, token_in_query=True)
        client.sendClose()
    finally:
        yield port.stopListening()
    assert listener_credential.scopes[0] == ("https://relay.azure.net/.default",)
    # sync get_token ran in the reactor's thread pool, the async one on a private asyncio loop
    assert "MainThread" not in listener_credential.threads
    assert len(sender_credential.loops) == 1 and "MainThread" not in sender_credential.threads
    yield close_credential(sender_credential)
    yield close_credential(listener_credential)
    assert len(sender_credential.loops) == 1 and sender_credential.closed_in in sender_credential.threads
    assert listener_credential.closed_in != "MainThread"


@pytest_twisted.inlineCallbacks
def test_http_sender_with_jwt_and_endpoint_with_credential(entra_relay):
    endpoint = HybridConnectionServerEndpoint(reactor, connection_string=no_keys(entra_relay), path="web",
                                              credential=MintingCredential(LISTENER), mode="http")
    port = yield endpoint.listen(server.Site(Hello()))
    try:
        status, _, _, body, _ = yield http_request(entra_relay.port, "GET", "/web/x", headers={"ServiceBusAuthorization": mint(SENDER)})
        assert (status, body) == (200, b"hello")
        # Authorization (with or without "Bearer") serves too, when the hybrid connection needs a token
        status, _, _, body, _ = yield http_request(entra_relay.port, "GET", "/web/x", headers={"Authorization": "Bearer " + mint(SENDER)})
        assert (status, body) == (200, b"hello")
        status, *_ = yield http_request(entra_relay.port, "GET", f"/web/x?sb-hc-token={mint(SENDER, kind='ES256')}")
        assert status == 200
        status, *_ = yield http_request(entra_relay.port, "GET", "/web/x", headers={"ServiceBusAuthorization": mint(LISTENER)})
        assert status == 403
        status, *_ = yield http_request(entra_relay.port, "GET", "/web/x", headers={"ServiceBusAuthorization": mint(SENDER, lifetime=-5)})
        assert status == 401
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_renewal_over_several_short_lifetimes(entra_relay):
    # 3 s tokens, 1 s leeway: the relay closes a control channel a second
    # after its token expires, so a listener still online after several
    # lifetimes renewed each time (with renewToken, on the same channel).
    renewing = MintingCredential(LISTENER, lifetime=3)
    factory = RelayedServerFactory(no_keys(entra_relay), path="echo", credential=AsyncMintingCredential(LISTENER, lifetime=3))
    factory.protocol = Echo
    port = yield factory.listen()

    class OneTokenOnly(MintingCredential):
        def get_token(self, *scopes, **kwargs):
            if self.issued:
                raise RuntimeError("the identity endpoint is down")
            return super().get_token(*scopes, **kwargs)

    stale = RelayedServerFactory(no_keys(entra_relay), path="stale", credential=OneTokenOnly(LISTENER, lifetime=3))
    stale_port = yield stale.listen()
    statuses = []
    stale_port.add_status_observer(lambda status, error=None: statuses.append((str(status), str(error))))
    sync_port = yield RelayedServerFactory(no_keys(entra_relay), path="sync", credential=renewing).listen()
    channel = list(entra_relay.relay.registry.entities["echo"].listeners.values())
    try:
        def expiry(token):
            return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]

        # Past the expiry of the first two tokens, and renewed at least four times.
        yield wait_for(lambda: len(renewing.issued) >= 5 and time.time() > expiry(renewing.issued[1]) + 0.5,
                       timeout=30, what="several lifetimes")
        assert port.status == sync_port.status == "online"
        assert list(entra_relay.relay.registry.entities["echo"].listeners.values()) == channel  # never reconnected
        client = yield connect_relay(Client, no_keys(entra_relay), path="echo", credential=MintingCredential(SENDER))
        client.sendMessage(b"still here")
        assert (yield client.replies.get()) == b"still here"
        client.sendClose()
        # The listener whose credential failed lost its channel when its token expired.
        yield wait_for(lambda: any("1008" in error for _, error in statuses), timeout=15, what="the stale channel's close")
    finally:
        yield port.stopListening()
        yield sync_port.stopListening()
        yield stale_port.stopListening()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key() -> str:
    # The classic algorithm confusion: HMAC keyed with the RSA public key's PEM.
    pem = signing_key("RS256").public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = json.loads(base64.urlsafe_b64decode(mint(SENDER).split(".")[1] + "=="))
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "test-rs256"}).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(hmac.new(pem, head.encode(), hashlib.sha256).digest())


def _alg_none() -> str:
    claims = json.loads(base64.urlsafe_b64decode(mint(SENDER).split(".")[1] + "=="))
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode()) + "."


def _tampered() -> str:
    head, claims, signature = mint(SENDER).split(".")
    other = json.loads(base64.urlsafe_b64decode(claims + "=="))
    other["oid"] = OWNER
    return f"{head}.{_b64(json.dumps(other).encode())}.{signature}"


REFUSALS = {
    "alg none": (_alg_none, 401),
    "HS256 keyed with the public key": (_hs256_with_public_key, 401),
    "unknown kid": (lambda: mint(SENDER, kid="rotated-away"), 401),
    "wrong issuer": (lambda: mint(SENDER, issuer="https://sts.windows.net/another-tenant/"), 401),
    "wrong audience": (lambda: mint(SENDER, audience="https://management.azure.com"), 401),
    "expired": (lambda: mint(SENDER, lifetime=-30), 401),
    "not yet valid": (lambda: mint(SENDER, nbf=time.time() + 600), 401),
    "claims changed after signing": (_tampered, 401),
    "no oid": (lambda: mint(""), 401),
    "listener role only": (lambda: mint(LISTENER), 403),
    "no role at all": (lambda: mint(NOBODY), 403),
    "role on another hybrid connection": (lambda: mint(SENDER, kind="ES256"), 403),
}


@pytest_twisted.inlineCallbacks
def test_every_refusal(entra_relay):
    for name, (make, status) in REFUSALS.items():
        path = "other" if name == "role on another hybrid connection" else "echo"
        token = make()
        with pytest.raises(RelayRefused) as refused:
            yield connect_relay(Client, no_keys(entra_relay), path=path, token=token)
        assert refused.value.status == status, name
        assert token not in str(refused.value)
    # listening: Sender is not Listener; Owner may do both
    with pytest.raises(RelayRefused) as refused:
        yield RelayedServerFactory(no_keys(entra_relay), path="echo", credential=MintingCredential(SENDER)).listen()
    assert refused.value.status == 403 and "Azure Relay Listener" in refused.value.reason
    port = yield RelayedServerFactory(no_keys(entra_relay), path="echo", credential=MintingCredential(OWNER, kind="ES256")).listen()
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_relay_without_entra_refuses_jwts_and_credential_failures_are_named(relay):
    with pytest.raises(RelayRefused) as refused:
        yield connect_relay(Client, no_keys(relay), path="echo", token=mint(SENDER))
    assert refused.value.status == 401 and "[entraId]" in refused.value.reason

    class Broken:
        def get_token(self, *scopes, **kwargs):
            raise RuntimeError("no managed identity endpoint found")

    with pytest.raises(RelayCredentialError, match=r"\(Broken\) could not get a token .*no managed identity endpoint found"):
        yield RelayedServerFactory(no_keys(relay), path="echo", credential=Broken()).listen()


ASYNCIO_SCRIPT = r"""
import asyncio, sys
from twisted.internet import asyncioreactor
asyncioreactor.install(asyncio.new_event_loop())
from twisted.internet import defer, reactor, task
from tests.support.entra import AsyncMintingCredential, relay_config
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory

async def main(tmp):
    relay = await defer.Deferred.fromCoroutine(_start(tmp))
    credential = AsyncMintingCredential("5", lifetime=2)
    cs = f"Endpoint={relay.connection_string.endpoint};UseDevelopmentEmulator=true"
    port = await RelayedServerFactory(cs, path="a", credential=credential).listen()
    while len(credential.issued) < 3:  # renewed twice on the reactor's own loop
        await task.deferLater(reactor, 0.1, lambda: None)
    assert credential.loops == {id(reactor._asyncioEventloop)}, credential.loops
    assert port.status == "online"
    await port.stopListening()
    await relay.stop()
    print("asyncio credential ok")

async def _start(tmp):
    import pathlib
    return await start_relay(relay_config(pathlib.Path(tmp), [("5", "Listener", "*")], leeway=1))

task.react(lambda r, tmp: defer.Deferred.fromCoroutine(main(tmp)), [sys.argv[1]])
"""


def test_async_credential_on_the_asyncio_reactor(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", ASYNCIO_SCRIPT, str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "asyncio credential ok" in done.stdout, done.stderr[-3000:]


class ManagedIdentityEndpoint(resource.Resource):
    """An App Service managed-identity endpoint (IDENTITY_ENDPOINT/IDENTITY_HEADER), minting the tests' tokens."""

    isLeaf = True

    def __init__(self, principal):
        super().__init__()
        self.principal = principal
        self.requests = []

    def render_GET(self, request):
        self.requests.append({k.decode(): v[0].decode() for k, v in request.args.items()})
        if request.getHeader(b"x-identity-header") != b"identity-header-value":
            request.setResponseCode(401)
            return b"{}"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"access_token": mint(self.principal), "expires_on": str(int(time.time()) + 3600),
                           "resource": request.args[b"resource"][0].decode(), "token_type": "Bearer"}).encode()


@pytest_twisted.inlineCallbacks
def test_managed_identity_connection_string_in_cli_and_endpoint_string(entra_relay, monkeypatch):
    from twisted.internet.endpoints import serverFromString

    identity = ManagedIdentityEndpoint(SENDER)
    site = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(server.Site(identity))
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{site.getHost().port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "identity-header-value")
    client_id = "0b7e2c44-6a3e-4f4b-9d1e-3c5a7b9d1f20"
    connection_string = f"{no_keys(entra_relay)};Authentication=Managed Identity;ClientId={client_id}"
    # The hyco: endpoint reads its connection string from the environment; the
    # listener's identity (the system-assigned one) is the Owner.
    monkeypatch.setenv("ENTRA_LISTENER", f"{no_keys(entra_relay)};EntityPath=web;Authentication=Managed Identity")
    try:
        endpoint = serverFromString(reactor, "hyco:connectionStringEnv=ENTRA_LISTENER:mode=http")
        identity.principal = OWNER
        port = yield endpoint.listen(server.Site(Hello()))
        identity.principal = SENDER  # the user-assigned one, for `txhyco request`
        try:
            env = dict(os.environ, HYCO_CONNECTION_STRING=connection_string,
                       PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
            done = yield threads.deferToThread(
                subprocess.run, [sys.executable, "-m", "txhyco", "request", "web", "/x"], env=env, cwd=ROOT,
                capture_output=True, text=True, timeout=60)
            assert (done.returncode, done.stdout.rstrip().splitlines()[-1:]) == (0, ["hello"]), done.stderr
        finally:
            yield port.stopListening()
    finally:
        yield site.stopListening()
    assert identity.requests[0]["resource"] == "https://relay.azure.net" and "client_id" not in identity.requests[0]
    assert identity.requests[-1]["client_id"] == client_id


@pytest_twisted.inlineCallbacks
def test_readme_entra_snippet(entra_relay):
    # README, "Entra ID (Azure AD) instead of keys": the snippet as written, with this relay
    # for the namespace and a credential of the tests' own for DefaultAzureCredential.
    import re

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"test_readme_entra_snippet -->\n```python\n(.*?)\n```", text, re.S).group(1)
    assert "credential=DefaultAzureCredential()" in block
    block = block.replace("from azure.identity import DefaultAzureCredential", "")
    block = block.replace("Endpoint=sb://myns.servicebus.windows.net/", no_keys(entra_relay))
    scope = {"DefaultAzureCredential": lambda: MintingCredential(LISTENER)}
    exec(compile(block, "README.md", "exec"), scope)
    port = yield scope["listening"]
    try:
        client = yield connect_relay(Client, no_keys(entra_relay), path="echo", credential=MintingCredential(SENDER))
        client.sendMessage(b"readme")
        assert (yield client.replies.get()) == b"readme"
        client.sendClose()
    finally:
        yield port.stopListening()
