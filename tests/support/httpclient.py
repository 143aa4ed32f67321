"""A real HTTP/1.1 client (the standard library's) run in a thread, so the reactor keeps turning."""
from __future__ import annotations

import http.client
import time

from twisted.internet import threads


def http_request(port: int, method: str, target: str, body: bytes | None = None, headers: dict | None = None,
                 *, chunks: list[bytes] | None = None, timeout: float = 30):
    """Fires with (status, reason, headers message, body, seconds); ``chunks`` sends a chunked body."""
    def run():
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            if chunks is not None:
                conn.putrequest(method, target)
                for name, value in (headers or {}).items():
                    conn.putheader(name, value)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for chunk in chunks:
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.headers, data, time.monotonic() - start
        finally:
            conn.close()
    return threads.deferToThread(run)
