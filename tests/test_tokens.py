"""Token providers and renewal scheduling (README, "Compared with Microsoft's clients"
and "Staying up"; Microsoft's "Service Bus access control with Shared Access
Signatures")."""
import asyncio
import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights, SasRule, SasToken, verify_token
from txhyco.protocol.tokens import (
    CallableTokenProvider,
    SasKeyTokenProvider,
    StaticTokenProvider,
    TokenProvider,
    renewal_time,
)

KEY = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG0="


def test_static_provider():
    p = StaticTokenProvider("SharedAccessSignature sr=a&sig=secret&se=1&skn=b")
    assert p.get_token("sb://ns/hc", 0) == "SharedAccessSignature sr=a&sig=secret&se=1&skn=b"
    assert "secret" not in repr(p)
    assert isinstance(p, TokenProvider)
    assert p == StaticTokenProvider("SharedAccessSignature sr=a&sig=secret&se=1&skn=b")
    for bad in ["", "  ", None]:
        with pytest.raises(ProtocolError):
            StaticTokenProvider(bad)


def test_sas_key_provider_mints_dotnet_audience():
    p = SasKeyTokenProvider("RootManageSharedAccessKey", KEY)
    token = p.get_token("sb://contoso.servicebus.windows.net/hyco", 1699996400.7)
    assert token == (
        "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F"
        "&sig=sADVCpmfL8NpvfXa7v86BBx9rJooXnUGVpAccOFGGYA%3D&se=1700000000&skn=RootManageSharedAccessKey"
    )
    same = p.get_token("wss://contoso.servicebus.windows.net/$hc/hyco?sb-hc-action=listen", 1699996400)
    assert same == token
    assert KEY not in repr(p) and "RootManageSharedAccessKey" in repr(p)
    assert isinstance(p, TokenProvider)


def test_sas_key_provider_tokens_verify():
    p = SasKeyTokenProvider("listen", "k3y", lifetime=60)
    token = p.get_token("ws://127.0.0.1:9090/$hc/a/b", 1000)
    parsed = verify_token(
        token, rules={"listen": SasRule("listen", "k3y", rights=Rights.LISTEN)}, hosts=["127.0.0.1"],
        entity_path="a/b", required=Rights.LISTEN, now=1000,
    )
    assert parsed.expiry == 1060


def test_sas_key_provider_reuses_a_token_for_a_tenth_of_its_lifetime():
    p = SasKeyTokenProvider("n", "k", lifetime=100)
    first = p.get_token("sb://ns/hc", 1000)
    assert p.get_token("sb://ns/hc", 1009.9) == first  # 90.1 s of 100 left: reused
    assert p.get_token("sb://ns/other", 1005) != first  # another audience: its own
    later = p.get_token("sb://ns/hc", 1010)  # would have 90 s left: signed again
    assert later != first and SasToken.parse(later).expiry == 1110
    assert p.get_token("sb://ns/hc", 1005) != later  # a clock gone back: signed again
    for n in range(200):  # many audiences: the provider keeps a bounded few
        p.get_token(f"sb://ns/hc{n}", 2000)
    assert len(p._recent) <= 64


def test_one_connection_string_one_sas_provider():
    from txhyco.protocol.connection_string import ConnectionString

    text = "Endpoint=sb://ns.example.net/;SharedAccessKeyName=n;SharedAccessKey=k"
    assert ConnectionString.parse(text) is ConnectionString.parse(text)
    assert ConnectionString.parse(text).token_provider() is ConnectionString.parse(text).token_provider()
    assert ConnectionString.parse(text).token_provider(60) is not ConnectionString.parse(text).token_provider()
    ConnectionString.parse(text).token_provider(1)
    with pytest.raises(ProtocolError):
        ConnectionString.parse(text).token_provider(True)  # not the lifetime=1 provider


@pytest.mark.parametrize(
    "args",
    [("", "k"), ("n", ""), ("n" * 257, "k"), ("n", "k" * 257), ("n", "k", 0), ("n", "k", -1),
     ("n", "k", float("nan")), ("n", "k", float("inf")), ("n", "k", "3600"), (None, "k")],
)
def test_sas_key_provider_validation(args):
    with pytest.raises(ProtocolError):
        SasKeyTokenProvider(*args)


def test_sas_key_provider_limits_are_inclusive():
    SasKeyTokenProvider("n" * 256, "k" * 256)


def test_callable_provider_sync_and_async():
    seen = []

    def sync(audience):
        seen.append(audience)
        return "tok"

    async def coro(audience):
        return "async-" + audience

    assert CallableTokenProvider(sync).get_token("sb://ns/hc", 5) == "tok" and seen == ["sb://ns/hc"]
    awaitable = CallableTokenProvider(coro).get_token("a", 0)
    assert asyncio.run(awaitable) == "async-a"
    with pytest.raises(ProtocolError):
        CallableTokenProvider(lambda a: 42).get_token("a", 0)
    with pytest.raises(ProtocolError):
        CallableTokenProvider("not callable")
    assert "sync" in repr(CallableTokenProvider(sync))


def _jwt(exp):
    body = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_renewal_time():
    token = SasKeyTokenProvider("n", "k").get_token("sb://ns/hc", 1000)
    assert SasToken.parse(token).expiry == 4600
    assert renewal_time(token, 1000) == pytest.approx(1000 + 0.85 * 3600)
    # Short lifetimes: never later than se - 60.
    short = SasKeyTokenProvider("n", "k", lifetime=300).get_token("sb://ns/hc", 1000)
    assert renewal_time(short, 1000) == 1240
    # Shorter than two margins: halfway, once per lifetime (not every second).
    brief = SasKeyTokenProvider("n", "k", lifetime=20).get_token("sb://ns/hc", 1000)
    assert renewal_time(brief, 1000) == 1010
    # Already (nearly) expired: renew now, not in the past.
    assert renewal_time(short, 5000) == 5000 and isinstance(renewal_time(short, 5000), float)
    assert renewal_time(_jwt(4600), 1000) == pytest.approx(1000 + 0.85 * 3600)
    assert renewal_time("opaque", 1000) is None
    assert renewal_time(_jwt("soon"), 1000) is None


@settings(deadline=None)
@given(st.integers(0, 2**40), st.floats(1, 10**7), st.floats(0, 2**40))
def test_renewal_time_bounds(issued, lifetime, now):
    token = SasKeyTokenProvider("n", "k", lifetime=lifetime).get_token("sb://ns/hc", issued)
    expiry = SasToken.parse(token).expiry
    when = renewal_time(token, now)
    assert when >= now
    assert when < expiry or when == now  # before expiry, or now for a token already expired
    if expiry - now >= 120:
        assert when <= expiry - 60
    else:  # short-lived: once per lifetime, halfway
        assert when >= now + (expiry - now) / 2 - 1e-9 * max(1.0, abs(now))  # (float rounding at 2**40)


@settings(deadline=None)
@given(st.text())
def test_renewal_time_never_raises(text):
    result = renewal_time(text, 0)
    assert result is None or isinstance(result, float)
