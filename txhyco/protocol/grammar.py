"""HTTP's field grammar (RFC 9110) as regular expressions, and the one way header bytes become text.

Every module that checks a method, a header name or value, or a request
target uses these. Each pattern exists for ``str`` (commands, h11's input)
and, where bytes are read off a socket, for ``bytes`` (suffix ``_B``).
"""
from __future__ import annotations

import re

__all__ = [
    "TOKEN",
    "TOKEN_B",
    "PLAIN_FIELD_VALUE",
    "PLAIN_FIELD_VALUE_B",
    "PLAIN_TARGET",
    "FORBIDDEN_IN_VALUE",
    "FORBIDDEN_IN_VALUE_B",
    "FORBIDDEN_IN_TARGET",
    "field_text",
    "plain_fields",
]

# tchar (RFC 9110 section 5.6.2): what a token -- a method, a header name -- is made of.
_TCHAR = r"[-!#$%&'*+.^_`|~0-9A-Za-z]"
# field-value without obs-text (RFC 9110 section 5.5): visible ASCII runs
# joined by spaces and tabs, no whitespace at either end.
_PLAIN_VALUE = r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*"

#: A token (RFC 9110 section 5.6.2): methods and header names.
TOKEN = re.compile(_TCHAR + "+")
TOKEN_B = re.compile((_TCHAR + "+").encode("ascii"))

#: A field value of visible ASCII only (RFC 9110 section 5.5 without
#: obs-text): what is written and read as is, without asking h11.
PLAIN_FIELD_VALUE = re.compile(_PLAIN_VALUE)
PLAIN_FIELD_VALUE_B = re.compile(_PLAIN_VALUE.encode("ascii"))

#: A request-target of visible ASCII only (RFC 9112 section 3.2): written as is.
PLAIN_TARGET = re.compile(r"[\x21-\x7e]+")

#: Characters no header value, id, address or reason phrase may hold: control
#: characters other than HTAB (RFC 9110 section 5.5; CR/LF would smuggle
#: headers, NUL truncates in C parsers, h11 refuses the rest) and lone
#: surrogates (not encodable as UTF-8).
FORBIDDEN_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
FORBIDDEN_IN_VALUE_B = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # (bytes hold no surrogates)

#: Characters a request-target may not hold: besides those of
#: :data:`FORBIDDEN_IN_VALUE`, spaces and tabs, as it is part of a request
#: line ("GET {target} HTTP/1.1", RFC 9112 section 3).
FORBIDDEN_IN_TARGET = re.compile("[\x00-\x20\x7f\ud800-\udfff]")


# Header fields judged at once, for hot paths (one regex call for all names
# and one for all values, not two per field): the names joined by LF must be
# tokens separated by single LFs; the values joined by LF must be ASCII, hold
# no control character but HTAB and neither begin nor end with a space or tab.
_JOINED_NAMES = re.compile(TOKEN.pattern + r"(?:\n" + TOKEN.pattern + ")*")
_JOINED_NAMES_B = re.compile(TOKEN_B.pattern + rb"(?:\n" + TOKEN_B.pattern + rb")*")
_NOT_PLAIN_LINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|^[ \t]|[ \t]$", re.MULTILINE)
_NOT_PLAIN_LINE_B = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|^[ \t]|[ \t]$", re.MULTILINE)


def plain_fields(names, values) -> bool:
    """Whether header fields (their names and their values, all str or all bytes) are of the plain shape.

    Plain: every name a token, every value empty or of
    :data:`PLAIN_FIELD_VALUE`'s shape -- what is written and read as is.
    """
    if isinstance(names[0], bytes):
        sep, name_shape, not_plain = b"\n", _JOINED_NAMES_B, _NOT_PLAIN_LINE_B
    else:
        sep, name_shape, not_plain = "\n", _JOINED_NAMES, _NOT_PLAIN_LINE
    lines = len(names) - 1
    joined_names, joined_values = sep.join(names), sep.join(values)
    return (name_shape.fullmatch(joined_names) is not None and joined_names.count(sep) == lines
            and joined_values.isascii() and joined_values.count(sep) == lines
            and not_plain.search(joined_values) is None)


def field_text(data: bytes) -> str:
    """Header bytes as text: UTF-8, else Latin-1.

    RFC 9110 section 5.5 leaves non-ASCII field bytes (obs-text) opaque;
    today's clients send UTF-8, older ones Latin-1, which decodes any byte,
    so every value has a text form and none is refused for its encoding.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
