"""Seeded generators of hostile input for the live fuzzing tests (tests/test_fuzz_live.py).

Everything comes from one ``random.Random(seed)``, so a run is repeatable: a
failure names its case, and the same seed gives the same bytes. Each generator
yields ``(label, data)``: ``label`` says what is wrong, for assertion messages.
"""
from __future__ import annotations

import json
import random
import struct

from twisted.logger import globalLogPublisher

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class FailureLog:
    """Collects logged failures and errors (``log_failure`` or ``isError``) while it is on."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.events.append(event)

    def stop(self) -> list[dict]:
        globalLogPublisher.removeObserver(self)
        return self.events


def head(lines: list[str | bytes]) -> bytes:
    return b"".join((line.encode("latin-1") if isinstance(line, str) else line) + b"\r\n" for line in lines) + b"\r\n"


def upgrade_lines(path: str, host: str, token: str | None) -> list[str]:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"]
    if token is not None:
        lines.append(f"ServiceBusAuthorization: {token}")
    return lines


def junk(rng: random.Random, size: int, alphabet: bytes | None = None) -> bytes:
    if alphabet is None:
        return bytes(rng.randrange(256) for _ in range(size))
    return bytes(rng.choice(alphabet) for _ in range(size))


def _replace(lines, prefix, new):
    return [new if line.lower().startswith(prefix.lower()) else line for line in lines]


def _drop(lines, prefix):
    return [line for line in lines if not line.lower().startswith(prefix.lower())]


def broken_upgrades(rng: random.Random, count: int, *, path: str, host: str, token: str):
    """Upgrade heads with a valid token, each broken in one way that must get a 4xx."""
    values = [b"", b" ", b"\x00", b"\xff\xfe", b"%zz", b"=" * 40, b"\xc3\x28", b"a" * 300]

    def value():
        return rng.choice(values) + junk(rng, rng.randrange(0, 12), b"abc-_=/+%!;, \t")

    # (Sec-WebSocket-Version 8, hybi-10, is not among the unknown versions: Autobahn serves it too.)
    mutations = {
        "key not base64": lambda L: _replace(L, "Sec-WebSocket-Key", b"Sec-WebSocket-Key: " + value() + b"!"),
        "key of the wrong length": lambda L: _replace(L, "Sec-WebSocket-Key", "Sec-WebSocket-Key: " + "QUJD" * rng.randrange(1, 3)),
        "no key": lambda L: _drop(L, "Sec-WebSocket-Key"),
        "unknown version": lambda L: _replace(L, "Sec-WebSocket-Version", "Sec-WebSocket-Version: " + str(rng.choice([0, 7, 12, 14, 99, -1]))),
        "version not a number": lambda L: _replace(L, "Sec-WebSocket-Version", b"Sec-WebSocket-Version: x" + value()),
        "no version": lambda L: _drop(L, "Sec-WebSocket-Version"),
        "no host": lambda L: _drop(L, "Host"),
        "unknown action": lambda L: [L[0].replace("HTTP/1.1", "") .rstrip() + "?sb-hc-action=" + rng.choice(["dance", "", "LISTENX", "acc%00ept"]) + " HTTP/1.1", *L[1:]],
        "rendezvous id never issued": lambda L: [f"GET /$hc/{path}?sb-hc-action=accept&sb-hc-id={rng.randrange(10**9)} HTTP/1.1", *L[1:]],
        "bad percent-encoding": lambda L: [f"GET /$hc/{path}%{rng.choice(['zz', 'g1', '', '0'])} HTTP/1.1", *L[1:]],
        "no entity path": lambda L: ["GET /$hc/ HTTP/1.1", *L[1:]],
        "entity path too long": lambda L: [f"GET /$hc/{'n' * 300} HTTP/1.1", *L[1:]],
        "control byte in a header value": lambda L: L + [b"X-Evil: a" + bytes([rng.choice([0, 1, 8, 11, 12, 127])]) + b"b"],
        "header name with a space": lambda L: L + [b"X Evil: 1"],
        "header without a colon": lambda L: L + [b"NoColonHere"],
        "obs-fold": lambda L: L + [b"X-Folded: a", b" continued"],
        "bare LF line": lambda L: L + [b"X-A: 1\nX-B: 2"],
        "two hosts": lambda L: L + [f"Host: other{rng.randrange(99)}.example"],
        "two content lengths": lambda L: L + ["Content-Length: 1", "Content-Length: 2"],
        "HTTP/1.0 upgrade": lambda L: [L[0].replace("HTTP/1.1", "HTTP/1.0"), *L[1:]],
        "unknown HTTP version": lambda L: [L[0].replace("HTTP/1.1", rng.choice(["HTTP/2.0", "HTTP/1.x", "HTTP/9", "HTTPS/1.1"])), *L[1:]],
        "absurd target": lambda L: [b"GET " + rng.choice([b"*", b"http://[", b"//", b"?", b"/$hc/" + junk(rng, 6, b"\x01\x7f ")]) + b" HTTP/1.1", *L[1:]],
    }
    names = sorted(mutations)
    for n in range(count):
        label = names[n % len(names)] if n < len(names) else rng.choice(names)
        lines = upgrade_lines(f"/$hc/{path}", host, token)
        yield label, head(mutations[label](lines))


def wrong_methods(rng: random.Random, *, path: str, host: str, token: str):
    """WebSocket-only targets asked with the wrong method; and methods that are not tokens."""
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "BREW"]:
        lines = upgrade_lines(f"/$hc/{path}?sb-hc-action=listen", host, token)
        lines[0] = lines[0].replace("GET", method, 1)
        yield f"{method} listen", head(lines)
    for method in [b"G ET", b"GET\x00", b"\xffGET", b"GE(T", b"", b"get /x"]:
        yield f"method {method!r}", head([method + b" /" + path.encode() + b"/x HTTP/1.1", f"Host: {host}"])


def garbage_heads(rng: random.Random, count: int):
    """Random bytes, alone or after a plausible start of a head, always ending a head."""
    starts = [b"", b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nHost: a\r\n", b"\x16\x03\x01\x00\xa5\x01",
              b"PRI * HTTP/2.0\r\n\r\nSM\r\n", b"GET /$hc/x?sb-hc-action=listen HTTP/1.1\r\n"]
    for n in range(count):
        yield f"garbage {n}", rng.choice(starts) + junk(rng, rng.randrange(1, 400)) + b"\r\n\r\n"


def bad_tokens(rng: random.Random, count: int, *, good: str):
    """Tokens that must all be refused with 401: mutations of ``good`` and plain junk."""
    alphabet = b"abcXYZ0189+/=%&;-_. "
    for n in range(count):
        kind = n % 6
        if kind == 0:
            token = junk(rng, rng.randrange(1, 80), alphabet).decode()
        elif kind == 1:  # flip one character of the signature
            sig_at = good.index("sig=") + 4 + rng.randrange(20)
            token = good[:sig_at] + chr(ord(good[sig_at]) ^ 1) + good[sig_at + 1:]
        elif kind == 2:
            token = good.replace("&se=", f"&se={rng.randrange(10)}")
        elif kind == 3:
            token = good.replace("skn=", "skn=" + junk(rng, 3, b"abcdef").decode())
        elif kind == 4:
            token = "SharedAccessSignature " + "&".join(
                f"{rng.choice(['sr', 'sig', 'se', 'skn', 'x'])}={junk(rng, 5, alphabet).decode()}" for _ in range(rng.randrange(6)))
        else:
            token = "eyJ" + junk(rng, 20, b"abcdefABCDEF0123").decode() + "." + junk(rng, 10, b"abc").decode() + ".sig"
        yield f"bad token {n} (kind {kind})", token.strip() or "x"


# -- WebSocket frames ----------------------------------------------------------------


def client_frame(payload: bytes, *, opcode: int = 1, fin: bool = True, rsv: int = 0, mask: bytes = b"\x01\x02\x03\x04",
                 length: int | None = None) -> bytes:
    """A masked client frame; ``length`` may lie about the payload's length."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


#: What a WebSocket endpoint must answer to each kind of bad frame (RFC 6455 §7.4.1).
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009


def bad_frames(rng: random.Random, count: int, *, max_message: int):
    """(label, bytes, close codes allowed) for a sender leg that is already open."""
    invalid_utf8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"abc\x80"]
    makers = [
        ("reserved opcode", lambda: client_frame(b"x", opcode=rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])), {PROTOCOL_ERROR}),
        ("RSV bits without an extension", lambda: client_frame(b"x", rsv=rng.randrange(1, 8)), {PROTOCOL_ERROR}),
        ("unmasked frame", lambda: b"\x81\x03abc", {PROTOCOL_ERROR}),
        ("continuation without a start", lambda: client_frame(b"x", opcode=0), {PROTOCOL_ERROR}),
        ("fragmented ping", lambda: client_frame(b"p", opcode=9, fin=False), {PROTOCOL_ERROR}),
        ("ping over 125 bytes", lambda: client_frame(b"p" * 126, opcode=9), {PROTOCOL_ERROR}),
        ("close with a 1-byte body", lambda: client_frame(b"\x03", opcode=8), {PROTOCOL_ERROR}),
        ("close with an invalid code", lambda: client_frame(struct.pack("!H", rng.choice([0, 999, 1004, 1005, 1006, 1015, 2999, 5000])), opcode=8), {PROTOCOL_ERROR}),
        ("new message inside a fragmented one", lambda: client_frame(b"a", fin=False) + client_frame(b"b", opcode=2), {PROTOCOL_ERROR}),
        ("invalid UTF-8 text", lambda: client_frame(rng.choice(invalid_utf8)), {INVALID_DATA}),
        ("invalid UTF-8 across fragments", lambda: client_frame(b"ok\xe2", fin=False) + client_frame(b"(", opcode=0), {INVALID_DATA}),
        ("invalid UTF-8 close reason", lambda: client_frame(b"\x03\xe8\xff\xfe", opcode=8), {PROTOCOL_ERROR, INVALID_DATA}),
        ("oversized message", lambda: client_frame(b"z" * (max_message + 1), opcode=2), {TOO_BIG}),
        ("oversized length announced", lambda: client_frame(b"", opcode=2, length=max_message + rng.randrange(1, 1 << 40)), {TOO_BIG}),
        ("oversized across fragments", lambda: client_frame(b"y" * max_message, opcode=2, fin=False) + client_frame(b"y", opcode=0), {TOO_BIG}),
    ]
    for n in range(count):
        label, make, codes = makers[n % len(makers)] if n < len(makers) else rng.choice(makers)
        yield label, make(), codes


def server_close_code(data: bytes) -> int | None:
    """The code of the first Close frame in unmasked server ``data`` (after a 101 head); None if none."""
    _, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    while len(rest) >= 2:
        opcode, length = rest[0] & 0x0F, rest[1] & 0x7F
        at = 2
        if length == 126:
            length, at = struct.unpack("!H", rest[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", rest[2:10])[0], 10
        payload = rest[at:at + length]
        if opcode == 8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        rest = rest[at + length:]
    return None


# -- control channel commands ----------------------------------------------------------


def _json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 200, 2**63, 1.5, 1e308])
    if kind == 3:
        return rng.choice(["", "x", "ws://127.0.0.1:1/", "\u0000", "\r\nX: 1", "a" * 100])
    if kind == 4:
        return rng.choice([[], {}])
    if kind == 5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["id", "address", "statusCode", "x"]): _json_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def wrong_listener_commands(rng: random.Random, count: int):
    """Valid JSON a listener must not send on its control channel (each must get 1008)."""
    fixed = [
        ("accept sent by a listener", {"accept": {"address": "ws://x/", "id": "1", "connectHeaders": {}}}),
        ("request sent by a listener", {"request": {"address": "ws://x/", "id": "1"}}),
        ("unknown command", {"dance": {}}),
        ("two commands", {"response": {"requestId": "a", "statusCode": 200}, "renewToken": {"token": "t"}}),
        ("an array", [1, 2, 3]),
        ("a string", "response"),
        ("a number", 42),
        ("null", None),
        ("response without requestId", {"response": {"statusCode": 200}}),
        ("status a word", {"response": {"requestId": "a", "statusCode": "two hundred"}}),
        ("status out of range", {"response": {"requestId": "a", "statusCode": 99999}}),
        ("headers a list", {"response": {"requestId": "a", "statusCode": 200, "responseHeaders": ["a"]}}),
        ("header value an object", {"response": {"requestId": "a", "statusCode": 200, "responseHeaders": {"a": {"b": 1}}}}),
        ("renewToken without token", {"renewToken": {}}),
        ("renewToken a number", {"renewToken": {"token": 5}}),
    ]
    for n in range(count):
        if n < len(fixed):
            label, obj = fixed[n]
        else:
            name = rng.choice(["accept", "request", "renewToken", "response", "x"])
            members = {rng.choice(["requestId", "statusCode", "body", "token", "responseHeaders", "id"]): _json_value(rng)
                       for _ in range(rng.randrange(1, 4))}
            label, obj = f"random {name} {n}", {name: members}
            if name == "response" and _plausible_response(members):
                continue  # a well-formed response for an unknown id is ignored, not refused: tested apart
        yield label, json.dumps(obj).encode()


def _plausible_response(members) -> bool:
    return isinstance(members.get("requestId"), str) and isinstance(members.get("statusCode"), int) \
        and 200 <= members["statusCode"] <= 599


def hostile_relay_commands(rng: random.Random, count: int):
    """(label, payload, is_binary) a hostile relay may send a listener on its control channel."""
    fixed = [
        ("not JSON", b"{not json", False),
        ("unknown command", b'{"dance": {}}', False),
        ("renewToken sent by a relay", b'{"renewToken": {"token": "x"}}', False),
        ("response sent by a relay", b'{"response": {"requestId": "x", "statusCode": 200}}', False),
        ("accept to nowhere", b'{"accept": {"address": "ws://127.0.0.1:1/$hc/x?sb-hc-action=accept&sb-hc-id=1", "id": "1", "connectHeaders": {}}}', False),
        ("accept with a non-WebSocket address", b'{"accept": {"address": "http://x/", "id": "2", "connectHeaders": {}}}', False),
        ("accept without an address", b'{"accept": {"id": "3", "connectHeaders": {}}}', False),
        ("request with a smuggling header", json.dumps({"request": {
            "address": "ws://127.0.0.1:1/$hc/x?sb-hc-action=request&sb-hc-id=9", "id": "smuggle-1", "requestTarget": "/x/",
            "method": "GET", "requestHeaders": {"X-Evil": "a\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1"},
            "body": False}}).encode(), False),
        ("request with a NUL in a header name", json.dumps({"request": {
            "address": "ws://127.0.0.1:1/$hc/x?sb-hc-action=request&sb-hc-id=9", "id": "smuggle-2", "requestTarget": "/x/",
            "method": "GET", "requestHeaders": {"X\u0000Evil": "a"}, "body": False}}).encode(), False),
        ("deeply nested", b"[" * 5000 + b"]" * 5000, False),
    ]
    for n in range(count):
        if n < len(fixed):
            yield fixed[n]
        else:
            name = rng.choice(["accept", "request", "x"])
            # (no "body": a request announcing one makes the next command a framing error, tested apart)
            members = {rng.choice(["address", "id", "connectHeaders", "requestTarget", "method", "requestHeaders"]):
                       _json_value(rng) for _ in range(rng.randrange(1, 4))}
            yield f"random {name} {n}", json.dumps({name: members}).encode(), False
