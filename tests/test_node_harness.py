"""The harness that runs Microsoft's Node relay clients works, without our relay.

These tests check the pinned npm install, that each script fails fast and
clearly when no relay is reachable, and that the Twisted-side spawner waits
without blocking the reactor (pytest-twisted runs the real reactor, and the
relay under test will run in it too). Two small Autobahn servers stand in for
"something that accepts the WebSocket upgrade" so the ready/echo paths can be
exercised; they are not relays. Interop with the real relay lives elsewhere.
"""
from __future__ import annotations

import json
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

try:
    from tests.interop import nodeclients as nc
except ImportError:  # tests/ is on sys.path instead of the project root
    from interop import nodeclients as nc

KEY = "k3y-Only-For-Harness-Tests+/=0123456789abcdef"
LISTENERS = ("hyco_ws_listener", "hyco_https_listener")

needs_node = pytest.mark.skipif(nc.node_executable() is None, reason="node is not installed")
needs_clients = pytest.mark.skipif(not nc.node_available(), reason=nc.unavailable_reason() or "-")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_secret(result: nc.NodeResult) -> None:
    text = json.dumps(result.events) + result.stderr
    assert KEY not in text
    assert "sig=" not in text.replace("sig=<redacted>", "")


# --------------------------------------------------------------------------- install


@needs_node
def test_pinned_clients_installed():
    assert nc.installed_version("hyco-ws") == "1.0.5", nc.unavailable_reason()
    assert nc.installed_version("hyco-https") == "1.4.5", nc.unavailable_reason()
    assert nc.installed_version("ws").split(".")[0] == "8"


def test_package_json_pins_exact_versions():
    manifest = json.loads((nc.NODE_DIR / "package.json").read_text())
    assert manifest["private"] is True
    deps = manifest["dependencies"]
    assert deps["hyco-ws"] == "1.0.5"
    assert deps["hyco-https"] == "1.4.5"
    assert deps["ws"].startswith("8.")
    assert deps["http"] == "file:./stubs/http"
    assert manifest["overrides"] == {"http": "$http"}


def test_package_lock_is_portable():
    lock_text = (nc.NODE_DIR / "package-lock.json").read_text()
    lock = json.loads(lock_text)
    assert lock["lockfileVersion"] == 3
    packages = lock["packages"]
    assert packages["node_modules/hyco-ws"]["version"] == "1.0.5"
    assert packages["node_modules/hyco-https"]["version"] == "1.4.5"
    assert packages["node_modules/http"] == {"resolved": "stubs/http", "link": True}
    assert str(nc.NODE_DIR) not in lock_text
    assert "/work/" not in lock_text and "/tmp/" not in lock_text


@needs_clients
def test_require_http_is_node_core():
    """hyco-ws lists the unpublished npm package `http`; the stub must never shadow core."""
    import subprocess

    out = subprocess.run(
        [nc.node_executable(), "-e",
         "const p=require.resolve('hyco-ws');"
         "const r=require('module').createRequire(p);"
         "console.log(r('http')===require('node:http'))"],
        cwd=nc.NODE_DIR, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "true", out.stderr


# --------------------------------------------------------------------------- helpers


def test_build_args_refuses_the_key():
    with pytest.raises(ValueError):
        nc.build_args({"key": KEY})
    with pytest.raises(ValueError):
        nc.build_args(["--key", KEY])
    assert nc.build_args({"keyName": "r", "plain": True, "retry": False, "protocol": ["a", "b"]}) == [
        "--key-name", "r", "--plain", "--protocol", "a", "--protocol", "b"]


def test_build_env_carries_key_and_ca():
    env = nc.build_env(KEY, "/x/ca.pem")
    assert env[nc.KEY_ENV] == KEY
    assert env["NODE_EXTRA_CA_CERTS"] == "/x/ca.pem"
    assert env["HYCO_EXIT_ON_STDIN_EOF"] == "1"


def test_redact_hides_keys_tokens_and_signatures():
    text = (f"key {KEY} uri ws://h/$hc/p?sb-hc-action=listen&sb-hc-token=SharedAccessSignature%20sr%3Dx"
            " hdr SharedAccessSignature sr=http%3A%2F%2Fh%2Fp&sig=abc%3D&se=1&skn=r")
    out = nc.redact(text, [KEY])
    assert KEY not in out
    assert "abc%3D" not in out and "SharedAccessSignature%20sr" not in out
    assert "sb-hc-action=listen" in out


def test_parse_line_tolerates_stray_output():
    assert nc.parse_line('{"event":"ready"}') == {"event": "ready"}
    assert nc.parse_line("(node:1) Warning") == {"event": "stdout", "text": "(node:1) Warning"}
    assert nc.parse_line("[1,2]")["event"] == "stdout"


def test_unknown_script_is_refused():
    with pytest.raises(ValueError):
        nc.script_path("rm_rf.js")


# --------------------------------------------------------------------------- failure paths (Twisted)


@needs_clients
@pytest.mark.parametrize("script", LISTENERS)
@pytest_twisted.inlineCallbacks
def test_listener_fails_clearly_without_relay(script):
    port = closed_port()
    node = nc.spawn_node(script, {"base": f"ws://127.0.0.1:{port}", "path": "hc1"}, key=KEY)
    try:
        with pytest.raises(nc.NodeScriptError) as info:
            yield node.wait_ready(20)
        result = yield node.wait_exit(10)
    finally:
        yield node.stop()
    assert "ended before event 'ready'" in str(info.value)
    assert result.exit_code == nc.EXIT_CONNECT
    error = result.last("error")
    assert error["stage"] == "listen"
    assert "ECONNREFUSED" in error["message"]
    assert "ECONNREFUSED" in result.stderr
    assert KEY not in str(info.value)
    assert_no_secret(result)


@needs_clients
@pytest.mark.parametrize("plain", [False, True], ids=["relayedConnect", "plain-ws8"])
@pytest_twisted.inlineCallbacks
def test_sender_fails_clearly_without_relay(plain):
    port = closed_port()
    result = yield nc.run_node_to_exit(
        "hyco_ws_sender", {"base": f"ws://127.0.0.1:{port}", "path": "hc1", "plain": plain},
        key=KEY, timeout=20)
    assert result.exit_code == nc.EXIT_CONNECT, result.describe()
    assert result.last("error")["stage"] == "connect"
    assert "ECONNREFUSED" in result.last("error")["message"]
    assert result.last("result")["ok"] is False
    assert_no_secret(result)


@needs_clients
@pytest.mark.parametrize("script", [*LISTENERS, "hyco_ws_sender"])
@pytest_twisted.inlineCallbacks
def test_usage_errors_exit_2(script):
    no_base = yield nc.run_node_to_exit(script, {"path": "hc1"}, key=KEY, timeout=20)
    assert no_base.exit_code == nc.EXIT_USAGE
    assert "--base is required" in no_base.last("error")["message"]
    no_key = yield nc.run_node_to_exit(
        script, {"base": "ws://127.0.0.1:1", "path": "hc1"}, key=None, timeout=20)
    assert no_key.exit_code == nc.EXIT_USAGE
    assert "HYCO_KEY" in no_key.last("error")["message"]


@needs_clients
@pytest_twisted.inlineCallbacks
def test_waiting_does_not_block_the_reactor():
    """The reactor keeps ticking while a test waits on a Node script."""
    ticks = []
    loop = task.LoopingCall(lambda: ticks.append(1))
    loop.start(0.01)
    try:
        node = nc.spawn_node("hyco_https_listener",
                             {"base": f"ws://127.0.0.1:{closed_port()}", "path": "hc1"}, key=KEY)
        result = yield node.wait_exit(20)
    finally:
        loop.stop()
    assert result.exit_code == nc.EXIT_CONNECT
    assert len(ticks) >= 5  # node needs well over 50 ms to start


@needs_clients
@pytest_twisted.inlineCallbacks
def test_wait_ready_times_out_with_context():
    """A script that never reports ready: the wait fails, the process is still stoppable."""
    node = nc.spawn_node("hyco_https_listener",
                         {"base": f"ws://127.0.0.1:{closed_port()}", "path": "hc1", "retry": True},
                         key=KEY)
    try:
        with pytest.raises(nc.NodeScriptError) as info:
            yield node.wait_ready(1.5)
        assert "no event 'ready' within 1.5s" in str(info.value)
        assert "control_error" in str(info.value)
    finally:
        result = yield node.stop()
    assert result.exit_code is not None or result.signal is not None


@needs_clients
def test_blocking_runner_reports_failure():
    """The Popen runner (for threads / non-Twisted tests) sees the same failure."""
    with nc.run_node("hyco_ws_listener",
                     {"base": f"ws://127.0.0.1:{closed_port()}", "path": "hc1"}, key=KEY) as proc:
        with pytest.raises(nc.NodeScriptError, match="ended before event 'ready'"):
            proc.wait_ready(20)
        result = proc.wait(10)
    assert result.exit_code == nc.EXIT_CONNECT
    assert_no_secret(result)


# --------------------------------------------------------------------------- ready / echo paths
# Stand-ins that only accept the WebSocket upgrade (not relays).

def _upgrade_recorder(seen: list):
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Recorder(WebSocketServerProtocol):
        def onConnect(self, request):
            seen.append(request)
            return None

    factory = WebSocketServerFactory()
    factory.protocol = Recorder
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)
    return factory


def _echo_server():
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Echo(WebSocketServerProtocol):
        def dropConnection(self, abort=False):
            # Autobahn servers abort (RST) the TCP connection right after a close
            # handshake they started; ws 1.1.5 (hyco-ws) then reports 1006 instead
            # of the close code it did receive. A clean FIN keeps the code.
            super().dropConnection(abort=False)

        def onMessage(self, payload, isBinary):
            if not isBinary and payload.startswith(b"close:"):
                _, code, reason = payload.decode().split(":", 2)
                self.sendClose(int(code), reason)
                return
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)
    return factory


@needs_clients
@pytest.mark.parametrize("script", LISTENERS)
@pytest_twisted.inlineCallbacks
def test_listener_ready_and_listen_request_shape(script):
    """READY arrives while this reactor serves the upgrade; records the listen request."""
    seen = []
    port = reactor.listenTCP(0, _upgrade_recorder(seen), interface="127.0.0.1")
    base = f"ws://127.0.0.1:{port.getHost().port}"
    node = nc.spawn_node(script, {"base": base, "path": "hc1"}, key=KEY)
    try:
        ready = yield node.wait_ready(20)
    finally:
        result = yield node.stop()
        yield port.stopListening()
    assert ready["event"] == "ready"
    assert result.exit_code == 0, result.describe()
    request = seen[0]
    assert request.path == "/$hc/hc1"
    assert request.params == {"sb-hc-action": ["listen"]}
    token = request.headers["servicebusauthorization"]
    assert token.startswith("SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A")
    assert "&skn=RootManageSharedAccessKey" in token
    assert_no_secret(result)


@needs_clients
@pytest_twisted.inlineCallbacks
def test_listener_query_token_carrier():
    seen = []
    port = reactor.listenTCP(0, _upgrade_recorder(seen), interface="127.0.0.1")
    base = f"ws://127.0.0.1:{port.getHost().port}"
    node = nc.spawn_node("hyco_ws_listener", {"base": base, "path": "hc1", "tokenCarrier": "query"},
                         key=KEY)
    try:
        ready = yield node.wait_ready(20)
    finally:
        yield node.stop()
        yield port.stopListening()
    assert "sb-hc-token=<redacted>" in ready["listenUri"]
    request = seen[0]
    assert "servicebusauthorization" not in request.headers
    assert request.params["sb-hc-token"][0].startswith("SharedAccessSignature sr=")


@needs_clients
@pytest.mark.parametrize("plain", [False, True], ids=["relayedConnect", "plain-ws8"])
@pytest_twisted.inlineCallbacks
def test_sender_script_verifies_echoes(plain):
    """The sender's scripted exchange against a plain echo server (no relay)."""
    port = reactor.listenTCP(0, _echo_server(), interface="127.0.0.1")
    base = f"ws://127.0.0.1:{port.getHost().port}"
    try:
        result = yield nc.run_node_to_exit(
            "hyco_ws_sender",
            {"base": base, "path": "hc1", "plain": plain,
             "messages": "t:0,t:10,b:1,b:70000,t:70000", "remoteClose": "4001:bye now"},
            key=KEY, timeout=30)
    finally:
        yield port.stopListening()
    assert result.exit_code == 0, result.describe()
    echoes = result.of("echo")
    assert [(e["type"], e["size"]) for e in echoes] == [
        ("text", 0), ("text", 10), ("binary", 1), ("binary", 70000), ("text", 70000)]
    assert all(e["ok"] for e in echoes)
    final = result.last("result")
    assert final["ok"] and final["close"] == {"initiatedBy": "listener", "code": 4001, "reason": "bye now"}
    assert_no_secret(result)


@needs_clients
@pytest_twisted.inlineCallbacks
def test_sender_plain_mode_puts_token_in_query():
    seen = []
    port = reactor.listenTCP(0, _upgrade_recorder(seen), interface="127.0.0.1")
    base = f"ws://127.0.0.1:{port.getHost().port}"
    try:
        result = yield nc.run_node_to_exit(
            "hyco_ws_sender",
            {"base": base, "path": "hc1", "plain": True, "messages": "", "close": "1000:bye",
             "suffix": "a/b", "query": "x=1"},
            key=KEY, timeout=30)
    finally:
        yield port.stopListening()
    assert result.exit_code == 0, result.describe()
    request = seen[0]
    assert request.path == "/$hc/hc1/a/b"
    assert request.params["x"] == ["1"]
    assert request.params["sb-hc-action"] == ["connect"]
    assert request.params["sb-hc-token"][0].startswith("SharedAccessSignature sr=")
    assert "servicebusauthorization" not in request.headers


@needs_clients
@pytest_twisted.inlineCallbacks
def test_sender_reports_refused_upgrade_status():
    """A refused upgrade (as a reject or a missing listener looks) yields status + reason."""
    from twisted.internet.protocol import Factory, Protocol

    class Refuse(Protocol):
        def dataReceived(self, data):
            if b"\r\n\r\n" in data:
                self.transport.write(b"HTTP/1.1 404 There are no listeners connected\r\n"
                                     b"Content-Length: 2\r\n\r\nno")
                self.transport.loseConnection()

    port = reactor.listenTCP(0, Factory.forProtocol(Refuse), interface="127.0.0.1")
    base = f"ws://127.0.0.1:{port.getHost().port}"
    try:
        results = yield defer.gatherResults([
            nc.run_node_to_exit("hyco_ws_sender", {"base": base, "path": "hc1", "plain": plain},
                                key=KEY, timeout=30)
            for plain in (False, True)])
    finally:
        yield port.stopListening()
    for result in results:
        assert result.exit_code == nc.EXIT_CONNECT, result.describe()
        error = result.last("error")
        assert error["status"] == 404
        assert error["reason"] == "There are no listeners connected"
