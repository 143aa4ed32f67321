"""Entra ID settings: the relay's [entraId] and [[roleAssignments]] (strict, with their garbage),
signing-key files, and the client side's arguments and missing-package messages."""
import json
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.entra import ISSUER, MintingCredential, mint, public_jwk, relay_config, signing_key, write_jwks
from txhyco.address import HybridConnection
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights
from txhyco.relay.auth import check_token
from txhyco.relay.config import HybridConnectionConfig, load_config, parse_config
from txhyco.relay.registry import Entity


def _pem(kind="RS256") -> bytes:
    return signing_key(kind).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check(config, token, name="echo", required=Rights.LISTEN):
    return check_token(config, Entity(HybridConnectionConfig(name=name)), token, host="127.0.0.1", required=required, now=time.time())


def test_pem_keys_and_a_relative_jwks_file(tmp_path):
    (tmp_path / "keys.pem").write_bytes(_pem("RS256") + _pem("ES256"))
    (tmp_path / "relay.toml").write_text(
        f'[entraId]\nissuer = "{ISSUER}"\njwksFile = "keys.pem"\nleeway = 5\n'
        '[[roleAssignments]]\nprincipal = "p"\nrole = "Owner"\nscope = "*"\n'
    )
    config = load_config(str(tmp_path / "relay.toml"))
    # PEM keys have no kid: each key of the token's algorithm is tried.
    assert _check(config, mint("p", kid="anything")).principal == "p"
    assert _check(config, mint("p", kind="ES256"), required=Rights.SEND | Rights.MANAGE).expiry > time.time()
    assert config.entra.leeway == 5
    with pytest.raises(ProtocolError, match="expired") as refused:
        _check(config, mint("p", lifetime=-6))
    assert refused.value.status == 401
    _check(config, mint("p", lifetime=-4))  # within the leeway


def test_audience_setting_and_trailing_slash(tmp_path):
    doc = {"entraId": {"issuer": ISSUER, "audience": "https://relay.example.test/", "jwksFile": write_jwks(tmp_path / "k.json")},
           "roleAssignments": [{"principal": "p", "role": "listener", "scope": "echo"}]}
    config = parse_config(doc)
    _check(config, mint("p", audience="https://relay.example.test"))
    with pytest.raises(ProtocolError, match="audience"):
        _check(config, mint("p"))


def test_scopes_follow_hybrid_connection_names(tmp_path):
    config = relay_config(tmp_path, [("p", "Listener", "Orders")])
    _check(config, mint("p"), name="orders")  # names are case-insensitive, as on Azure
    with pytest.raises(ProtocolError) as refused:
        _check(config, mint("p"), name="orders/sub")
    assert refused.value.status == 403


def _doc(tmp_path, entra=None, assignments=None, **top):
    doc = dict(top)
    if entra is not False:
        doc["entraId"] = {"issuer": ISSUER, "jwksFile": write_jwks(tmp_path / "jwks.json"), **(entra or {})}
    if assignments is not None:
        doc["roleAssignments"] = assignments
    return doc


GOOD = {"principal": "p", "role": "Listener", "scope": "*"}


@pytest.mark.parametrize("entra, assignments, top, message", [
    ({"issuer": None}, None, {}, "'issuer' must be a string"),
    ({"issuer": "login.microsoftonline.com"}, None, {}, "must be a URL"),
    ({"jwksFile": ""}, None, {}, "must not be empty"),
    ({"audiance": "x"}, None, {}, "did you mean 'audience'"),
    ({"leeway": -1}, None, {}, "'leeway' must be a number of seconds"),
    ({"leeway": 86400}, None, {}, "at most 3600"),
    ({}, [{**GOOD, "role": "Reader"}], {}, "unknown role 'Reader'"),
    ({}, [{**GOOD, "role": "listner"}], {}, "did you mean 'Listener'"),
    ({}, [{**GOOD, "role": 3}], {}, "must be a string"),
    ({}, [{"principal": "p", "role": "Owner"}], {}, "needs 'scope'"),
    ({}, [{**GOOD, "scope": "a b"}], {}, "must be a hybrid connection name or '\\*'"),
    ({}, [{**GOOD, "principal": " p"}], {}, "leading/trailing spaces"),
    ({}, [{**GOOD, "condition": "x"}], {}, "unknown setting 'condition'"),
    ({}, [GOOD, dict(GOOD)], {}, "two entries"),
    ({}, [{**GOOD, "scope": "billing"}], {"hybridConnections": [{"name": "orders"}]}, "not one of the file's hybrid connections"),
    (False, [GOOD], {}, r"need an \[entraId\] table"),
    ({}, GOOD, {}, "must be an array of tables"),
])
def test_config_garbage(tmp_path, entra, assignments, top, message):
    with pytest.raises(ProtocolError, match=message):
        parse_config(_doc(tmp_path, entra, assignments, **top))


def _jwks_file(tmp_path, content) -> str:
    path = tmp_path / "bad.jwks"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


RSA_JWK = lambda: public_jwk("RS256", "k1")  # noqa: E731
P384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("content, message", [
    (b"", "neither a JWKS nor PEM"),
    (b"\x00\xff" * 10, "neither a JWKS nor PEM"),
    (b"{not json", "not valid JSON"),
    ({"kty": "RSA"}, "not a JWKS"),
    ({"keys": []}, "holds no keys"),
    ({"keys": ["x"]}, "not a JSON object"),
    ({"keys": [{**RSA_JWK(), "kid": None}]}, "has no 'kid'"),
    ({"keys": [RSA_JWK(), RSA_JWK()]}, "two keys have the kid"),
    ({"keys": [{**RSA_JWK(), "d": "AQAB"}]}, "private key"),
    ({"keys": [{**RSA_JWK(), "use": "enc"}]}, "not a signing key"),
    ({"keys": [{**RSA_JWK(), "alg": "HS256"}]}, "only RS256 and ES256 are accepted"),
    ({"keys": [{**RSA_JWK(), "alg": "ES256"}]}, "not a usable key"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, "neither an RSA key nor an EC P-256 key|not a usable key"),
    ({"keys": [{**RSA_JWK(), "n": "!!"}]}, "not a usable key"),
    (signing_key("RS256").private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), "private key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "does not parse"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "give PUBLIC KEY or CERTIFICATE"),
    (P384, "neither RSA nor EC P-256"),
])
def test_key_file_garbage(tmp_path, content, message):
    with pytest.raises(ProtocolError, match=message):
        parse_config(_doc(tmp_path, {"jwksFile": _jwks_file(tmp_path, content)}))


def test_missing_key_file(tmp_path):
    with pytest.raises(ProtocolError, match="cannot read"):
        parse_config(_doc(tmp_path, {"jwksFile": str(tmp_path / "missing.json")}))


def test_relay_without_pyjwt_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ProtocolError, match=r"needs PyJWT .*pip install 'txhyco\[azure\]'"):
        parse_config(_doc(tmp_path, {"jwksFile": _jwks_file(tmp_path, {"keys": [RSA_JWK()]})}))


def test_connection_string_without_azure_identity_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(ProtocolError, match=r"needs the azure-identity package: pip install 'txhyco\[azure\]'"):
        HybridConnection.from_args(connection_string="Endpoint=sb://myns.servicebus.windows.net/;EntityPath=e;Authentication=Default")
    # a credential object of one's own needs no azure-identity
    hc = HybridConnection.from_args(namespace="myns", path="e", credential=MintingCredential())
    assert repr(hc.token_provider) == "CredentialTokenProvider(MintingCredential)"


def test_connection_string_credentials():
    import azure.identity

    hc = HybridConnection.from_args(
        connection_string="Endpoint=sb://myns.servicebus.windows.net/;EntityPath=e;Authentication=Managed Identity")
    assert isinstance(hc.token_provider.credential, azure.identity.ManagedIdentityCredential)
    hc = HybridConnection.from_args(connection_string="Endpoint=sb://myns.servicebus.windows.net/;EntityPath=e;Authentication=Default")
    assert isinstance(hc.token_provider.credential, azure.identity.DefaultAzureCredential)
    # an explicit credential takes the place of the string's
    mine = MintingCredential()
    hc = HybridConnection.from_args(connection_string="Endpoint=sb://myns.servicebus.windows.net/;EntityPath=e;Authentication=Default",
                                    credential=mine)
    assert hc.token_provider.credential is mine


@pytest.mark.parametrize("kwargs, message", [
    ({"credential": MintingCredential(), "token": "t"}, "not credential and token"),
    ({"credential": MintingCredential(), "key_name": "n", "key": "k"}, "not credential and key_name/key"),
    ({"credential": MintingCredential(), "token_provider": lambda a: "t"}, "not credential and token_provider"),
    ({"credential": "a token"}, "must be an azure-identity credential"),
    ({"credential": object()}, "must be an azure-identity credential"),
    ({"token_provider": MintingCredential()}, "pass it as credential="),
])
def test_credential_argument_garbage(kwargs, message):
    with pytest.raises(ProtocolError, match=message):
        HybridConnection.from_args(namespace="myns", path="e", **kwargs)


def test_readme_entra_config(tmp_path):
    # README, "Entra ID tokens on the local relay": the TOML as written.
    import os
    import re

    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"), encoding="utf-8").read()
    toml = re.search(r"```toml\n(# entra\.toml.*?)\n```", text, re.S).group(1)
    (tmp_path / "entra.toml").write_text(toml)
    write_jwks(tmp_path / "entra-keys.json")
    config = load_config(str(tmp_path / "entra.toml"))
    assert [(a.role, a.scope) for a in config.entra.assignments] == [("Listener", "echo"), ("Sender", "*")]
    listener, sender = (a.principal for a in config.entra.assignments)
    issuer = config.entra.issuer
    _check(config, mint(listener, issuer=issuer))
    _check(config, mint(sender, issuer=issuer, kind="ES256"), name="anything", required=Rights.SEND)


def test_endpoint_constructors_take_relay_arguments():
    from twisted.internet import reactor

    from txhyco.endpoint import HybridConnectionClientEndpoint, HybridConnectionServerEndpoint

    mine = MintingCredential()
    server = HybridConnectionServerEndpoint(reactor, namespace="myns", path="web", credential=mine, mode="http")
    client = HybridConnectionClientEndpoint(reactor, namespace="myns", path="web", credential=mine)
    assert server.hc.token_provider.credential is mine is client.hc.token_provider.credential
    assert server.mode == "http" and str(server.hc.address) == "wss://myns.servicebus.windows.net/$hc/web"
    with pytest.raises(TypeError, match="not both"):
        HybridConnectionClientEndpoint(reactor, client.hc, credential=mine)



def _b64json(value) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


_CLAIM = st.sampled_from(["alg", "kid", "typ", "crit", "iss", "aud", "exp", "nbf", "oid", "jku"])
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
                     | st.sampled_from(["RS256", "ES256", "none", "HS256", "test-rs256", ISSUER, "https://relay.azure.net"]),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_CLAIM, inner, max_size=6), max_leaves=10)


@settings(deadline=None, max_examples=100)
@given(header=_JSON, claims=_JSON, signature=st.text("ABCdef012-_", max_size=40))
def test_hostile_jwts_get_401(tmp_path_factory, header, claims, signature):
    config = _hostile_config(tmp_path_factory)
    token = f"{_b64json(header)}.{_b64json(claims)}.{signature}"
    with pytest.raises(ProtocolError) as refused:
        _check(config, token)
    assert refused.value.status == 401


_CONFIGS = {}


def _hostile_config(tmp_path_factory):
    if "c" not in _CONFIGS:
        _CONFIGS["c"] = relay_config(tmp_path_factory.mktemp("hostile"), [("p", "Owner", "*")])
    return _CONFIGS["c"]


def test_relay_without_pyjwt_says_so_at_load_for_pem_keys_too(tmp_path, monkeypatch):
    """PEM keys load without PyJWT; the relay must not start and then refuse every token with a 400."""
    (tmp_path / "keys.pem").write_bytes(_pem("RS256"))
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ProtocolError, match=r"needs PyJWT .*pip install 'txhyco\[azure\]'"):
        parse_config(_doc(tmp_path, {"jwksFile": str(tmp_path / "keys.pem")}))
