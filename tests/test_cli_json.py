"""``--json``: one JSON object per event (listen, connect --forward) or per result (request, token)."""
from __future__ import annotations

import json
import time

import pytest_twisted
from twisted.internet import defer

from tests.test_cli_tunnels import cli, echo_server, exchange, finished, stopped
from txhyco.cli import main


def objects(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_token_json_has_the_token_and_its_expiry(capsys, monkeypatch):
    monkeypatch.setenv("HYCO_CONNECTION_STRING",
                       "Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0;UseDevelopmentEmulator=true")
    before = int(time.time())
    assert main(["token", "--path", "db", "--lifetime", "600", "--json"]) == 0
    after = int(time.time())
    (obj,) = objects(capsys.readouterr().out)
    assert obj["event"] == "token" and obj["key_name"] == "k"
    assert obj["token"].startswith("SharedAccessSignature ") and "&skn=k" in obj["token"]
    assert obj["audience"] == "http://127.0.0.1/db/"
    assert before + 600 <= obj["expires_at"] <= after + 600
    assert f"se={obj['expires_at']}" in obj["token"]
    assert obj["expires"].endswith("Z") and obj["expires"].startswith(time.strftime("%Y-", time.gmtime(obj["expires_at"])))


@defer.inlineCallbacks
def wait_for_event(child, name: str):
    line = yield child.wait_for(f'"event":"{name}"')
    return json.loads(line)


@pytest_twisted.inlineCallbacks
def test_listen_request_and_connect_speak_json(relay):
    cs = relay.connection_string
    listener = cli("listen", "echo", "--echo", "--json", cs=cs)
    service = echo_server()
    tunnel_listener = cli("listen", "db", "--forward", str(service.getHost().port), "--json", cs=cs)
    sender = cli("connect", "db", "--forward", "0", "--json", cs=cs)
    try:
        started = yield wait_for_event(listener, "started")
        assert started["command"] == "listen" and started["path"] == "echo" and started["mode"] == "echo"
        yield wait_for_event(listener, "online")

        request = cli("request", "echo", "/hi", "--data", "ping", "--json", cs=cs)
        code, out, err = yield finished(request)
        assert code == 0, err
        (response,) = objects(out)
        assert response["status"] == 200 and response["reason"] == "OK" and response["body"] == "ping"
        assert response["body_size"] == 4 and response["method"] == "POST" and response["url"].endswith("/echo/hi")
        assert ["X-Echo-Path", "/hi"] in response["headers"]
        yield wait_for_event(listener, "request")

        yield wait_for_event(tunnel_listener, "online")
        bound = yield wait_for_event(sender, "started")
        host, port = bound["address"].rsplit(":", 1)
        assert (yield exchange(host, int(port), b"x" * 1000)) == b"x" * 1000
        closed = yield wait_for_event(sender, "closed")
        assert closed["connection"] == 1 and closed["bytes_in"] == 1000 and closed["bytes_out"] == 1000
    finally:
        results = yield defer.gatherResults([stopped(c) for c in (sender, tunnel_listener, listener)])
        yield service.stopListening()
    for code, out, err in results:
        assert code == 0, err
        events = objects(out)  # every line on stdout is a JSON object
        assert events[-1]["event"] == "stopped" and all("time" in e for e in events)
    names = [e["event"] for e in objects(results[0][1])]
    assert names[:2] == ["started", "listening"] and "opened" in names and "closed" in names
    opened = next(e for e in objects(results[1][1]) if e["event"] == "opened")
    assert opened["connection"] == 1 and "to 127.0.0.1:" in opened["description"]
    assert cs.shared_access_key not in "".join(out + err for _, out, err in results)


@pytest_twisted.inlineCallbacks
def test_json_with_the_interactive_session_is_a_usage_error(relay):
    code, _, err = yield finished(cli("connect", "echo", "--json", cs=relay.connection_string))
    assert code == 2 and "--json goes with --forward" in err
