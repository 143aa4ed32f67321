"""HTTP's field grammar and header text (txhyco.protocol.grammar), the one copy every module uses."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from txhyco.protocol.grammar import (
    FORBIDDEN_IN_TARGET,
    FORBIDDEN_IN_VALUE,
    PLAIN_FIELD_VALUE,
    PLAIN_FIELD_VALUE_B,
    PLAIN_TARGET,
    TOKEN,
    TOKEN_B,
    field_text,
    plain_fields,
)


@pytest.mark.parametrize("text, is_token", [
    ("GET", True), ("X-Custom_1.2", True), ("!#$%&'*+-.^_`|~", True),
    ("", False), ("a b", False), ("a:b", False), ("a\r\n", False), ("caf\u00e9", False), ('a"b', False),
])
def test_token(text, is_token):
    assert bool(TOKEN.fullmatch(text)) is is_token
    assert bool(TOKEN_B.fullmatch(text.encode("utf-8"))) is is_token


@pytest.mark.parametrize("text, is_plain", [
    ("text/html; charset=utf-8", True), ("a\tb", True), ("x", True),
    (" leading", False), ("trailing ", False), ("caf\u00e9", False), ("a\r\nb", False), ("", False),
])
def test_plain_field_value(text, is_plain):
    assert bool(PLAIN_FIELD_VALUE.fullmatch(text)) is is_plain
    assert bool(PLAIN_FIELD_VALUE_B.fullmatch(text.encode("utf-8"))) is is_plain


def test_targets_and_forbidden_characters():
    assert PLAIN_TARGET.fullmatch("/a/b?c=d&e")
    assert not PLAIN_TARGET.fullmatch("/a b")
    assert FORBIDDEN_IN_TARGET.search("/a b") and FORBIDDEN_IN_TARGET.search("/a\tb")
    assert not FORBIDDEN_IN_VALUE.search("a\tb caf\u00e9")
    for bad in ("a\rb", "a\nb", "a\x00b", "a\x7fb", "a\ud800b"):
        assert FORBIDDEN_IN_VALUE.search(bad) and FORBIDDEN_IN_TARGET.search(bad)


def test_field_text_is_utf8_else_latin1():
    assert field_text("caf\u00e9".encode("utf-8")) == "caf\u00e9"
    assert field_text(b"caf\xe9") == "caf\u00e9"
    assert field_text(bytearray(b"plain")) == "plain"


@given(st.binary())
def test_field_text_decodes_any_bytes(data):
    text = field_text(data)
    assert text.encode("utf-8") == data or text.encode("latin-1") == data


_FIELD_TEXT = st.text(alphabet=st.sampled_from('ab-: \t\n\r\x01\x7fé'), max_size=6)


@given(st.lists(st.tuples(_FIELD_TEXT, _FIELD_TEXT), min_size=1, max_size=5))
def test_plain_fields_judges_as_field_by_field_checks(fields):
    names, values = zip(*fields)
    one_by_one = all(TOKEN.fullmatch(n) and (v == "" or PLAIN_FIELD_VALUE.fullmatch(v)) for n, v in fields)
    assert plain_fields(names, values) == bool(one_by_one)
    as_bytes = [(n.encode("utf-8"), v.encode("utf-8")) for n, v in fields]
    assert plain_fields(*zip(*as_bytes)) == bool(one_by_one)
