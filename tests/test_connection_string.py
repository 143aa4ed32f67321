"""Connection strings (README, "Pointing it at Azure")."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txhyco.protocol.addresses import Namespace
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.tokens import SasKeyTokenProvider, StaticTokenProvider

KEY = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG0="
AZURE = (
    "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
    f"SharedAccessKey={KEY};EntityPath=myhc"
)
SIG = "SharedAccessSignature sr=http%3A%2F%2Fns%2F&sig=abc%3D&se=1&skn=r"


def test_parse_azure_form():
    cs = ConnectionString.parse(AZURE)
    assert cs.endpoint == "sb://myns.servicebus.windows.net/"
    assert cs.shared_access_key_name == "RootManageSharedAccessKey"
    assert cs.shared_access_key == KEY  # '=' inside the value survives
    assert cs.shared_access_signature is None
    assert cs.entity_path == "myhc"
    assert cs.use_development_emulator is False and cs.other == ()
    assert cs.namespace == Namespace("myns.servicebus.windows.net", None, True)
    assert cs.format() == AZURE
    assert ConnectionString.parse(cs.format()) == cs


def test_parse_lenient_spelling():
    cs = ConnectionString.parse(
        f"  endpoint = sb://127.0.0.1:9090/ ; SHAREDACCESSKEYNAME=n;sharedaccesskey={KEY};;"
        "UseDevelopmentEmulator=TRUE;OperationTimeout=00:01:00;"
    )
    assert cs.endpoint == "sb://127.0.0.1:9090/"
    assert cs.use_development_emulator
    assert cs.other == (("OperationTimeout", "00:01:00"),)
    assert cs.namespace == Namespace("127.0.0.1", 9090, False)
    assert cs.format() == (
        f"Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=n;SharedAccessKey={KEY};UseDevelopmentEmulator=true;"
        "OperationTimeout=00:01:00"
    )
    assert ConnectionString.parse(cs.format()) == cs


def test_signature_form_and_duplicates():
    cs = ConnectionString.parse(f"Endpoint=sb://ns.example/;SharedAccessSignature={SIG};Endpoint=sb://ns.example/")
    assert cs.shared_access_signature == SIG
    assert ConnectionString.parse(cs.format()) == cs
    assert isinstance(cs.token_provider(), StaticTokenProvider)
    assert cs.token_provider().get_token("x", 0) == SIG


def test_endpoint_schemes():
    assert ConnectionString.parse("Endpoint=wss://h.example/").namespace.secure is True
    assert ConnectionString.parse("Endpoint=ws://h.example:81").namespace == Namespace("h.example", 81, False)
    assert ConnectionString.parse("Endpoint=https://h.example/;UseDevelopmentEmulator=true").namespace.secure is True
    assert ConnectionString.parse("Endpoint=sb://h.example/;UseDevelopmentEmulator=false").namespace.secure is True


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no Endpoint"),
        ("SharedAccessKeyName=n;SharedAccessKey=k", "no Endpoint"),
        ("Endpoint=myns.servicebus.windows.net", "not a URL"),
        ("Endpoint=ftp://h/", "scheme"),
        ("Endpoint=sb://h/path", "path"),
        ("Endpoint=sb://h/;SharedAccessKeyName=n", "SharedAccessKeyName without SharedAccessKey"),
        ("Endpoint=sb://h/;SharedAccessKey=k", "SharedAccessKey without SharedAccessKeyName"),
        (f"Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey=k;SharedAccessSignature={SIG}", "both"),
        ("Endpoint=sb://h/;EntityPath=a;EntityPath=b", "EntityPath twice"),
        ("Endpoint=sb://h/;Foo=1;foo=2", "twice"),
        ("Endpoint=sb://h/;secretkeymaterial", "Part 2"),
        ("Endpoint=sb://h/;=x", "Part 2"),
        ("Endpoint=sb://h/;UseDevelopmentEmulator=yes", "true or false"),
    ],
)
def test_parse_errors(text, fragment):
    with pytest.raises(ProtocolError) as info:
        ConnectionString.parse(text)
    assert fragment in info.value.message
    assert "secretkeymaterial" not in info.value.message


def test_repr_and_str_redact_secrets():
    cs = ConnectionString.parse(AZURE)
    assert KEY not in repr(cs) and KEY not in str(cs) and KEY not in f"{cs}"
    assert "RootManageSharedAccessKey" in repr(cs)
    assert "SharedAccessKey=<redacted>" in str(cs)
    sig = ConnectionString.parse(f"Endpoint=sb://h/;SharedAccessSignature={SIG}")
    assert "abc" not in repr(sig) and "abc" not in str(sig)


def test_token_provider():
    cs = ConnectionString.parse(AZURE)
    provider = cs.token_provider()
    assert isinstance(provider, SasKeyTokenProvider)
    assert provider == SasKeyTokenProvider("RootManageSharedAccessKey", KEY)
    with pytest.raises(ProtocolError):
        ConnectionString.parse("Endpoint=sb://h/;Authentication=Managed Identity").token_provider()


def test_build():
    cs = ConnectionString.build(Namespace("127.0.0.1", 9090, False), key_name="n", key="k", entity_path="hc")
    assert cs.format() == "Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=n;SharedAccessKey=k;EntityPath=hc;UseDevelopmentEmulator=true"
    assert cs.namespace == Namespace("127.0.0.1", 9090, False)


def test_constructor_validates():
    with pytest.raises(ProtocolError):
        ConnectionString(endpoint="sb://h/", other=(("Endpoint", "x"),))
    with pytest.raises(ProtocolError):
        ConnectionString(endpoint="sb://h/", entity_path=" x")
    with pytest.raises(ProtocolError):
        ConnectionString(endpoint="sb://h/", other=(("a=b", "x"),))


# ---------------------------------------------------------------- properties

_value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=";"), min_size=1, max_size=20).map(
    str.strip).filter(bool)
_host = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z]{1,5}){0,2}", fullmatch=True)


@st.composite
def connection_strings(draw):
    host = draw(_host)
    port = draw(st.none() | st.integers(1, 65535))
    endpoint = f"{draw(st.sampled_from(['sb', 'wss', 'ws', 'https', 'http']))}://{host}" + (
        f":{port}" if port else "") + draw(st.sampled_from(["", "/"]))
    auth = draw(st.sampled_from(["key", "sig", "none", "mi", "default"]))
    other_keys = draw(st.lists(st.from_regex(r"[A-Z][a-z]{2,8}", fullmatch=True), unique_by=str.lower, max_size=3))
    other_keys = [k for k in other_keys if k.lower() not in {
        "endpoint", "sharedaccesskeyname", "sharedaccesskey", "sharedaccesssignature", "entitypath",
        "usedevelopmentemulator", "authentication", "clientid"}]
    return ConnectionString(
        endpoint=endpoint,
        shared_access_key_name=draw(_value) if auth == "key" else None,
        shared_access_key="\u2603" + draw(_value) if auth == "key" else None,
        shared_access_signature="\u2603" + draw(_value) if auth == "sig" else None,
        entity_path=draw(st.none() | _value),
        use_development_emulator=draw(st.booleans()),
        other=tuple((k, draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=";"),
                                     max_size=10).map(str.strip))) for k in other_keys),
        authentication={"mi": "ManagedIdentity", "default": "Default"}.get(auth),
        client_id=draw(st.none() | st.uuids().map(str)) if auth == "mi" else None,
    )


@settings(deadline=None)
@given(connection_strings())
def test_round_trip(cs):
    assert ConnectionString.parse(cs.format()) == cs
    assert ConnectionString.parse(str(cs)).endpoint == cs.endpoint
    for secret in (cs.shared_access_key, cs.shared_access_signature):
        if secret is not None:
            assert secret not in repr(cs) and secret not in str(cs)
    cs.namespace


@settings(deadline=None)
@given(st.text())
def test_parse_arbitrary_text(text):
    for candidate in (text, "Endpoint=sb://h/;" + text, "Endpoint=" + text):
        try:
            cs = ConnectionString.parse(candidate)
        except ProtocolError:
            continue
        assert ConnectionString.parse(cs.format()) == cs


# ---------------------------------------------------------------- Entra ID (Authentication=)

CLIENT_ID = "0b7e2c44-6a3e-4f4b-9d1e-3c5a7b9d1f20"


@pytest.mark.parametrize("written, meaning", [
    ("Managed Identity", "ManagedIdentity"),   # as the portal and Microsoft.Azure.Relay write it
    ("ManagedIdentity", "ManagedIdentity"),
    ("managed identity", "ManagedIdentity"),
    (" Managed  Identity ", "ManagedIdentity"),
    ("Default", "Default"),
    ("DEFAULT", "Default"),
])
def test_authentication_values(written, meaning):
    cs = ConnectionString.parse(f"Endpoint=sb://myns.servicebus.windows.net/;EntityPath=echo;Authentication={written}")
    assert cs.authentication == meaning and cs.client_id is None
    assert ConnectionString.parse(cs.format()) == cs
    assert "Authentication=" + ("Managed Identity" if meaning == "ManagedIdentity" else "Default") in cs.format()
    with pytest.raises(ProtocolError, match="azure-identity credential"):
        cs.token_provider()


def test_user_assigned_managed_identity():
    cs = ConnectionString.parse(f"Endpoint=sb://myns.servicebus.windows.net/;Authentication=Managed Identity;ClientId={CLIENT_ID}")
    assert cs.client_id == CLIENT_ID
    assert cs.format() == f"Endpoint=sb://myns.servicebus.windows.net/;Authentication=Managed Identity;ClientId={CLIENT_ID}"
    assert CLIENT_ID in repr(cs)  # a client ID is no secret


@pytest.mark.parametrize("text, message", [
    ("Authentication=SharedAccessKey", "must be 'Managed Identity' or 'Default'"),
    ("Authentication=Other", "must be 'Managed Identity' or 'Default'"),
    ("Authentication=Active Directory Default", "must be 'Managed Identity' or 'Default'"),
    ("Authentication=1", "must be 'Managed Identity' or 'Default'"),
    ("Authentication=", "must be 'Managed Identity' or 'Default'"),
    ("Authentication=Default;Authentication=Managed Identity", "twice"),
    (f"Authentication=Default;ClientId={CLIENT_ID}", "needs Authentication=Managed Identity"),
    (f"ClientId={CLIENT_ID}", "needs Authentication=Managed Identity"),
    ("Authentication=Managed Identity;ClientId=my-identity", "a GUID"),
    ("Authentication=Managed Identity;ClientId=" + CLIENT_ID + "0", "a GUID"),
    (f"Authentication=Managed Identity;SharedAccessKeyName=n;SharedAccessKey={KEY}", "give one way to authenticate"),
    (f"Authentication=Default;SharedAccessSignature={SIG}", "give one way to authenticate"),
])
def test_authentication_garbage(text, message):
    with pytest.raises(ProtocolError, match=message):
        ConnectionString.parse(f"Endpoint=sb://myns.servicebus.windows.net/;{text}")
