"""SAS tokens: signing vectors (Microsoft's "Service Bus access control with Shared
Access Signatures"), Node byte-compatibility, verification rules."""
import base64
import hashlib
import hmac
import inspect
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txhyco.protocol import sas
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import (
    Rights,
    SasRule,
    SasToken,
    create_relay_token,
    dotnet_audience,
    encode_component,
    is_expired,
    is_sas_token,
    looks_like_jwt,
    node_audience,
    sign_token,
    token_expiry,
    verify_token,
)

KEY = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG0="
SKN = "RootManageSharedAccessKey"
SE = 1700000000
HOST = "contoso.servicebus.windows.net"
ROW2_TOKEN = (
    "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F"
    "&sig=sADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA%3D&se=1700000000&skn=RootManageSharedAccessKey"
)
ROW2_QUERY = (
    "sb-hc-token=SharedAccessSignature%20sr%3Dhttp%253A%252F%252Fcontoso.servicebus.windows.net%252Fhyco%252F"
    "%26sig%3DsADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA%253D%26se%3D1700000000%26skn%3DRootManageSharedAccessKey"
)
RULES = {SKN: SasRule(SKN, KEY)}


def _raw_sig(sr: str, se: int = SE, key: str = KEY) -> str:
    mac = hmac.new(key.encode(), f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _token_with_raw_sr(sr: str, se: int = SE, key: str = KEY, skn: str = SKN) -> str:
    return f"SharedAccessSignature sr={sr}&sig={encode_component(_raw_sig(sr, se, key))}&se={se}&skn={skn}"


def verify(token, *, entity_path="hyco", required=Rights.LISTEN, now=SE - 10, hosts=(HOST,), rules=RULES, **kw):
    return verify_token(token, rules=rules, hosts=hosts, entity_path=entity_path, required=required, now=now, **kw)


# ---------------------------------------------------------------- signing vectors


@pytest.mark.parametrize(
    "sr, sig",
    [
        ("http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco", "j/eAo+vsacVcS0dWfxUPguNAiCVyHTzZHAihAkhnsAY="),
        ("http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F", "sADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA="),
        ("http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco%2f", "+9JMjUuOHgv/JXbL5MHfcF8Ozz7V/gfzrP0p2MeNcHQ="),
    ],
)
def test_signature_vectors(sr, sig):
    assert _raw_sig(sr) == sig
    assert sas._hmac_b64(KEY, f"{sr}\n{SE}") == sig


def test_sign_token_rows_1_and_2():
    row1 = sign_token("http://contoso.servicebus.windows.net/hyco", SKN, KEY, SE)
    assert row1 == (
        "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco"
        "&sig=j%2FeAo%2BvsacVcS0dWfxUPguNAiCVyHTzZHAihAkhnsAY%3D&se=1700000000&skn=RootManageSharedAccessKey"
    )
    assert sign_token("http://contoso.servicebus.windows.net/hyco/", SKN, KEY, SE) == ROW2_TOKEN


def test_query_encoded_form():
    assert "sb-hc-token=" + encode_component(ROW2_TOKEN) == ROW2_QUERY


def test_lower_case_hex_sr_verifies():
    token = _token_with_raw_sr("http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco%2f")
    assert "%2B9JMjUuOHgv%2FJXbL5MHfcF8Ozz7V%2FgfzrP0p2MeNcHQ%3D" in token
    parsed = verify(token)
    assert parsed.resource == "http://contoso.servicebus.windows.net/hyco/"


def test_encode_component_is_encode_uri_component():
    assert encode_component("a~!*'()b -_.") == "a~!*'()b%20-_."
    assert encode_component("é/?&=+#$") == "%C3%A9%2F%3F%26%3D%2B%23%24"
    with pytest.raises(ProtocolError):
        encode_component("\ud800")


# ---------------------------------------------------------------- audiences


def test_dotnet_audience():
    assert dotnet_audience("sb://MyNs.servicebus.windows.net/hyco") == "http://myns.servicebus.windows.net/hyco/"
    assert dotnet_audience("wss://ns:443/$hc/hyco?sb-hc-action=listen#x") == "http://ns/hyco/"
    assert dotnet_audience("sb://ns/") == "http://ns/"
    assert dotnet_audience("https://user:pw@ns:8443/a/b/") == "http://ns/a/b/"
    assert dotnet_audience("ws://[::1]:9090/$hc/x") == "http://[::1]/x/"


# Produced by running Node's createRelayToken algorithm (legacy url.parse/format,
# crypto.createHmac) with a fixed expiry (Azure/azure-relay-node).
NODE_VECTORS = [
    (
        "wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen",
        "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%3A443%2Fhyco"
        "&sig=UY632t1WY3ebk3ye6%2F5LX4pCIlpxtgmPjkUL0byoq98%3D&se=1700000000&skn=RootManageSharedAccessKey",
    ),
    (
        "https://contoso.servicebus.windows.net/hyco",
        "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco"
        "&sig=j%2FeAo%2BvsacVcS0dWfxUPguNAiCVyHTzZHAihAkhnsAY%3D&se=1700000000&skn=RootManageSharedAccessKey",
    ),
    (
        "wss://Contoso.servicebus.windows.net:443/$hc/my hc/sub?x=1#f",
        "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%3A443%2Fmy%2520hc%2Fsub"
        "&sig=Vtsn7YYWfcAAQsImOtJ6Oxad%2Flhbox%2F%2BdnO19shlaf8%3D&se=1700000000&skn=RootManageSharedAccessKey",
    ),
    (
        "ws://127.0.0.1:9090/$hc/a/$hc/b",
        "SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A9090%2Fa%2F%24hc%2Fb"
        "&sig=bBqwn9ACNPJouPpQ%2Fhek3V93SSBsz8F%2B8ceoJrId%2Bd4%3D&se=1700000000&skn=RootManageSharedAccessKey",
    ),
    (
        "wss://ns",
        "SharedAccessSignature sr=http%3A%2F%2Fns%2F"
        "&sig=NcCmDGluuNOJaJ4%2FvpI%2BCO5yNS4UWpayKR7%2FkU6RAJ0%3D&se=1700000000&skn=RootManageSharedAccessKey",
    ),
]


@pytest.mark.parametrize("uri, expected", NODE_VECTORS)
def test_create_relay_token_matches_node(uri, expected):
    assert create_relay_token(uri, SKN, KEY, SE) == expected


def test_create_relay_token_does_not_encode_key_name_like_node():
    assert create_relay_token("https://ns/x", "my key&x", KEY, 1).endswith("&se=1&skn=my key&x")
    assert sign_token("https://ns/x", "my key&x", KEY, 1).endswith("&skn=my%20key%26x")


def test_node_audience():
    assert node_audience("wss://NS:443/$hc/hyco?a=b") == "http://ns:443/hyco"
    assert node_audience("https://ns/path") == "http://ns/path"
    assert node_audience("wss://u:p@ns/a/$hc/b/$hc/c") == "http://u:p@ns/a/b/$hc/c"


@pytest.mark.parametrize("bad", ["", "no-scheme/path", "http:/x", "http://", 5])
def test_audience_functions_reject_non_uris(bad):
    with pytest.raises(ProtocolError):
        node_audience(bad)
    with pytest.raises(ProtocolError):
        dotnet_audience(bad)


def test_sign_token_validates():
    for args in [("", SKN, KEY, 1), ("r", "", KEY, 1), ("r", SKN, "", 1), ("r", SKN, KEY, -1), ("r", SKN, KEY, 1.5),
                 ("r", SKN, KEY, True), ("r", SKN, KEY, 2**63)]:
        with pytest.raises(ProtocolError):
            sign_token(*args)


# ---------------------------------------------------------------- parsing


def test_parse_row2():
    t = SasToken.parse(ROW2_TOKEN)
    assert t.raw == ROW2_TOKEN
    assert t.raw_resource == "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F"
    assert t.resource == "http://contoso.servicebus.windows.net/hyco/"
    assert t.signature == "sADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA="
    assert t.raw_expiry == "1700000000" and t.expiry == SE
    assert t.key_name == SKN


def test_parse_any_order_and_case_insensitive_prefix():
    t = SasToken.parse(
        "sharedaccesssignature sig=abc%3D&se=12&skn=rule%20one&sr=http%3A%2F%2Fns%2Fx&extra=1"
    )
    assert (t.signature, t.expiry, t.key_name, t.resource) == ("abc=", 12, "rule one", "http://ns/x")


def test_parse_plus_after_prefix_from_form_encoders():
    # .NET WebUtility.UrlEncode / Java URLEncoder turn the space into '+'.
    assert SasToken.parse(ROW2_TOKEN.replace(" ", "+", 1)).expiry == SE


def test_parse_64_bit_expiry():
    assert SasToken.parse("SharedAccessSignature sr=a&sig=b&se=9223372036854775807&skn=c").expiry == 2**63 - 1
    with pytest.raises(ProtocolError):
        SasToken.parse("SharedAccessSignature sr=a&sig=b&se=9223372036854775808&skn=c")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Bearer abc",
        "SharedAccessSignaturesr=a&sig=b&se=1&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=1",
        "SharedAccessSignature sr=a&sig=b&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=-1&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=1.5&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=١٢&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=1&skn=c&sr=d",
        "SharedAccessSignature sr=%zz&sig=b&se=1&skn=c",
        "SharedAccessSignature sr=%FF&sig=b&se=1&skn=c",
        "SharedAccessSignature sr=&sig=b&se=1&skn=c",
        "SharedAccessSignature sr=a&sig=b&se=1&skn=c&junk",
    ],
)
def test_parse_rejects_with_401(text):
    with pytest.raises(ProtocolError) as info:
        SasToken.parse(text)
    assert info.value.status == 401


def test_repr_hides_signature():
    t = SasToken.parse(ROW2_TOKEN)
    assert "sADVCpmf" not in repr(t) and "sADVCpmf" not in str(t)
    rule = SasRule("r", "primary-secret", "secondary-secret")
    assert "secret" not in repr(rule)


def test_is_sas_token_and_looks_like_jwt():
    assert is_sas_token(ROW2_TOKEN) and is_sas_token("sharedaccesssignature x")
    assert not is_sas_token("eyJ.a.b") and not is_sas_token(None)
    assert looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln")
    assert looks_like_jwt("Bearer eyJhbGciOiJub25lIn0.eyJleHAiOjF9.")
    assert not looks_like_jwt(ROW2_TOKEN) and not looks_like_jwt("a.b") and not looks_like_jwt(3)


def _jwt(claims) -> str:
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'RS256', 'typ': 'JWT'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_token_expiry():
    assert token_expiry(ROW2_TOKEN) == SE
    assert token_expiry(_jwt({"exp": 1234, "aud": "https://relay.azure.net/"})) == 1234
    assert token_expiry(_jwt({"exp": 1234.7})) == 1234
    assert token_expiry(_jwt({"nbf": 1})) is None
    assert token_expiry(_jwt([1, 2])) is None
    assert token_expiry("eyJhbGciOiJub25lIn0.!!!.x") is None
    assert token_expiry("a.b.c") is None
    assert token_expiry("SharedAccessSignature garbage") is None
    assert token_expiry(None) is None


# ---------------------------------------------------------------- Rights


def test_rights_parse():
    assert Rights.parse("Listen, Send") == Rights.LISTEN | Rights.SEND
    assert Rights.parse(["manage", "LISTEN"]) == Rights.MANAGE | Rights.LISTEN
    assert Rights.parse("") == Rights(0)
    for bad in ["Listen, Read", ["listen", 3], 7]:
        with pytest.raises(ProtocolError):
            Rights.parse(bad)


def test_manage_implies_listen_and_send():
    assert Rights.MANAGE.grants(Rights.LISTEN | Rights.SEND)
    assert not Rights.SEND.grants(Rights.LISTEN)
    assert Rights.LISTEN.grants(Rights(0))


# ---------------------------------------------------------------- verification


@pytest.mark.parametrize(
    "audience",
    [
        "http://contoso.servicebus.windows.net/hyco",
        "https://contoso.servicebus.windows.net/hyco",
        "sb://contoso.servicebus.windows.net/hyco",
        "wss://contoso.servicebus.windows.net:443/$hc/hyco",
        "ws://contoso.servicebus.windows.net:443/hyco?sb-hc-action=listen",
        "http://contoso.servicebus.windows.net:443/hyco",
        "http://CONTOSO.servicebus.windows.net/hyco/",
        "sb://contoso.servicebus.windows.net/hyco//",
        "sb://contoso.servicebus.windows.net//",
        "http://contoso.servicebus.windows.net/",
        "http://user@contoso.servicebus.windows.net/HYCO#frag",
    ],
)
def test_audience_tolerance(audience):
    verify(sign_token(audience, SKN, KEY, SE))


def test_node_and_dotnet_tokens_verify():
    verify(create_relay_token("wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen", SKN, KEY, SE))
    verify(sign_token(dotnet_audience("sb://contoso.servicebus.windows.net/hyco"), SKN, KEY, SE))


def test_audience_extension_and_percent_encoded_segments():
    verify(sign_token("http://contoso.servicebus.windows.net/a", SKN, KEY, SE), entity_path="a/b")
    verify(sign_token("http://contoso.servicebus.windows.net/my%20hc", SKN, KEY, SE), entity_path="my hc")
    with pytest.raises(ProtocolError) as info:
        verify(sign_token("http://contoso.servicebus.windows.net/a/b", SKN, KEY, SE), entity_path="a")
    assert info.value.status == 401 and "a/b" in info.value.message and "'a'" in info.value.message
    with pytest.raises(ProtocolError):
        verify(sign_token("http://contoso.servicebus.windows.net/hy", SKN, KEY, SE), entity_path="hyco")
    with pytest.raises(ProtocolError):
        verify(sign_token("http://contoso.servicebus.windows.net/HYCO", SKN, KEY, SE), path_case_sensitive=True)


def test_host_check():
    token = sign_token("http://other.servicebus.windows.net/hyco", SKN, KEY, SE)
    with pytest.raises(ProtocolError) as info:
        verify(token)
    assert info.value.status == 401 and "other.servicebus.windows.net" in info.value.message
    verify(token, hosts=None)
    verify(sign_token("http://127.0.0.1:9090/hyco", SKN, KEY, SE), hosts=["127.0.0.1"])
    verify(sign_token("http://[::1]:9090/hyco", SKN, KEY, SE), hosts=["[::1]"])


def test_invalid_signature():
    token = sign_token("http://contoso.servicebus.windows.net/hyco", SKN, "wrong-key", SE)
    with pytest.raises(ProtocolError) as info:
        verify(token)
    assert (info.value.status, info.value.message) == (401, "The token has an invalid signature.")
    # Re-encoding sr differently (upper vs lower hex) must not verify: the HMAC covers the raw bytes.
    forged = ROW2_TOKEN.replace("%2F", "%2f")
    with pytest.raises(ProtocolError):
        verify(forged)


def test_plus_decoded_as_space_is_tolerated():
    token = ROW2_TOKEN.replace(
        "sig=sADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA%3D", "sig=" + _raw_sig(
            "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F").replace("+", " ")
    )
    verify(token)
    row1 = sign_token("http://contoso.servicebus.windows.net/hyco", SKN, KEY, SE)
    verify(row1.replace("%2B", " "))
    sr_part, sig_part = row1.split("&sig=")
    verify(sr_part + "&sig=" + sig_part.replace("%2B", "+").replace("%2F", "/"))  # sig left unencoded


def test_secondary_key():
    rules = {SKN: SasRule(SKN, "primary", KEY)}
    verify(ROW2_TOKEN, rules=rules)
    with pytest.raises(ProtocolError):
        verify(ROW2_TOKEN, rules={SKN: SasRule(SKN, "primary", "secondary")})


def test_unknown_rule():
    with pytest.raises(ProtocolError) as info:
        verify(ROW2_TOKEN, rules={"other": SasRule("other", KEY)})
    assert info.value.status == 401 and SKN in info.value.message


def test_expiry_grace():
    verify(ROW2_TOKEN, now=SE + 299)
    verify(ROW2_TOKEN, now=SE + 300)
    with pytest.raises(ProtocolError) as info:
        verify(ROW2_TOKEN, now=SE + 301)
    assert info.value.status == 401 and info.value.message.startswith("The token is expired")
    assert "2023-11-14 22:13:20Z" in info.value.message
    with pytest.raises(ProtocolError):
        verify(ROW2_TOKEN, now=SE + 61, grace=60)
    token = SasToken.parse(ROW2_TOKEN)
    assert not is_expired(token, SE + 300, 300) and is_expired(token, SE + 300.5, 300)


def test_rights_403():
    rules = {SKN: SasRule(SKN, KEY, rights=Rights.SEND)}
    verify(ROW2_TOKEN, rules=rules, required=Rights.SEND)
    with pytest.raises(ProtocolError) as info:
        verify(ROW2_TOKEN, rules=rules, required=Rights.LISTEN)
    assert info.value.status == 403 and "Listen" in info.value.message
    verify(ROW2_TOKEN, rules={SKN: SasRule(SKN, KEY, rights=Rights.MANAGE)}, required=Rights.LISTEN)


def test_check_order_signature_before_expiry():
    token = sign_token("http://contoso.servicebus.windows.net/hyco", SKN, "wrong", SE)
    with pytest.raises(ProtocolError) as info:
        verify(token, now=SE + 10_000)
    assert info.value.message == "The token has an invalid signature."


def test_jwt_rejected_with_401():
    with pytest.raises(ProtocolError) as info:
        verify(_jwt({"exp": SE}))
    assert info.value.status == 401 and info.value.message.startswith("Entra ID tokens cannot be verified")


def test_constant_time_compare_is_used():
    assert "hmac.compare_digest" in inspect.getsource(sas._signature_matches)


def test_sas_rule_validation():
    with pytest.raises(ProtocolError):
        SasRule("", KEY)
    with pytest.raises(ProtocolError):
        SasRule("r", "")
    with pytest.raises(ProtocolError):
        SasRule("r", KEY, "")


# ---------------------------------------------------------------- properties

_printable = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(deadline=None)
@given(st.text())
def test_parse_arbitrary_text_only_protocol_error(text):
    try:
        SasToken.parse(text)
    except ProtocolError as exc:
        assert exc.status == 401
    assert token_expiry(text) is None or isinstance(token_expiry(text), int)
    is_sas_token(text)
    looks_like_jwt(text)


@settings(deadline=None)
@given(st.text(), st.text())
def test_verify_arbitrary_text_only_protocol_error(prefix, text):
    for candidate in (text, "SharedAccessSignature " + text, f"SharedAccessSignature sr={prefix}&sig={text}&se=1&skn={SKN}"):
        try:
            verify(candidate, now=0)
        except ProtocolError as exc:
            assert exc.status in (401, 403)


@settings(deadline=None)
@given(st.text())
def test_audience_functions_arbitrary_text(text):
    for func in (node_audience, dotnet_audience, lambda t: sas.audience_parts(t)):
        try:
            func(text)
        except ProtocolError:
            pass
    try:
        Rights.parse(text)
    except ProtocolError:
        pass


@settings(deadline=None)
@given(
    resource=_printable,
    key_name=_printable,
    key=_printable,
    expiry=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_sign_parse_round_trip(resource, key_name, key, expiry):
    token = sign_token(resource, key_name, key, expiry)
    parsed = SasToken.parse(token)
    assert (parsed.resource, parsed.key_name, parsed.expiry) == (resource, key_name, expiry)
    assert parsed.raw == token
    assert token_expiry(token) == expiry


@settings(deadline=None)
@given(
    path=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
        lambda s: "/" not in s), min_size=1, max_size=3),
    scheme=st.sampled_from(["http", "https", "sb", "wss"]),
    port=st.sampled_from(["", ":443", ":9090"]),
    trailing=st.sampled_from(["", "/", "//"]),
)
def test_sign_verify_round_trip(path, scheme, port, trailing):
    from txhyco.protocol.addresses import encode_entity_path

    entity = "/".join(path)
    try:
        encoded = encode_entity_path(entity)
    except ProtocolError:
        return  # '.'/'..' segments are not entity paths
    audience = f"{scheme}://{HOST}{port}/{encoded}{trailing}"
    verify(sign_token(audience, SKN, KEY, SE), entity_path=entity)
    verify(sign_token(audience, SKN, KEY, SE), entity_path=entity + "/suffix")
