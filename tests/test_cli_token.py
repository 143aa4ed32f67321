"""``txhyco token``: tokens that verify, the --query form, and clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from txhyco.cli import main
from txhyco.protocol.errors import ProtocolError
from txhyco.protocol.sas import Rights, SasRule, SasToken, node_audience, verify_token

KEY = "dG9rZW4tdGVzdC1rZXk="
CS = f"Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=Sender;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
RULES = {"Sender": SasRule("Sender", KEY, rights=Rights.SEND)}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("HYCO_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("HYCO_RELAY_KEY", raising=False)


def token_of(capsys, *args: str) -> str:
    assert main(["token", *args]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1  # the token alone
    return out.strip()


def verify(token: str, path: str, *, host: str = "127.0.0.1") -> SasToken:
    return verify_token(token, rules=RULES, hosts=[host], entity_path=path, required=Rights.SEND, now=time.time())


def test_token_from_connection_string_verifies(capsys):
    token = token_of(capsys, "--connection-string", CS, "--path", "orders")
    parsed = verify(token, "orders")
    assert parsed.resource == "http://127.0.0.1/orders/"  # .NET's audience by default
    assert parsed.key_name == "Sender"
    assert 3590 <= parsed.expiry - time.time() <= 3610
    with pytest.raises(ProtocolError):
        verify(token, "other")


def test_entity_path_lifetime_and_environment(capsys, monkeypatch):
    monkeypatch.setenv("HYCO_CONNECTION_STRING", CS + ";EntityPath=orders")
    token = token_of(capsys, "--lifetime", "60")
    parsed = verify(token, "orders/sub")
    assert 50 <= parsed.expiry - time.time() <= 70
    overridden = token_of(capsys, "--path", "/other/")
    verify(overridden, "other")


def test_namespace_wide_token_covers_every_path(capsys):
    token = token_of(capsys, "--connection-string", CS)
    verify(token, "anything")
    verify(token, "else/entirely")


def test_node_style(capsys):
    token = token_of(capsys, "--connection-string", CS, "--path", "orders", "--style", "node")
    parsed = verify(token, "orders")
    assert parsed.resource == node_audience("http://127.0.0.1:9090/orders")


def test_query_form_round_trips(capsys):
    encoded = token_of(capsys, "--connection-string", CS, "--path", "my hc", "--query")
    assert " " not in encoded and "&" not in encoded and "=" not in encoded
    decoded = urllib.parse.unquote(encoded)
    verify(decoded, "my hc")
    query = urllib.parse.parse_qs(f"sb-hc-action=connect&sb-hc-token={encoded}")
    assert query["sb-hc-token"] == [decoded]


def test_namespace_and_key_file(capsys, tmp_path, monkeypatch):
    key_file = tmp_path / "send.key"
    key_file.write_text(KEY + "\n")
    token = token_of(capsys, "--namespace", "127.0.0.1:9090", "--key-name", "Sender", "--key-file", str(key_file), "--path", "a")
    verify(token, "a")
    monkeypatch.setenv("HYCO_RELAY_KEY", KEY)
    verify(token_of(capsys, "--namespace", "127.0.0.1:9090", "--key-name", "Sender", "--path", "a"), "a")
    cloud = token_of(capsys, "--namespace", "myns", "--key-name", "Sender", "--key", KEY, "--path", "a")
    verify(cloud, "a", host="myns.servicebus.windows.net")


@pytest.mark.parametrize(
    "args, code, words",
    [
        ([], 2, ["no credentials", "--connection-string", "HYCO_CONNECTION_STRING"]),
        (["--connection-string", "Endpoint=nonsense"], 1, ["Endpoint"]),
        (["--connection-string", "Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1&skn=c"], 1, ["SharedAccessKey"]),
        (["--connection-string", CS, "--namespace", "x"], 2, ["not both"]),
        (["--namespace", "127.0.0.1:9090"], 2, ["key"]),
        (["--connection-string", CS, "--lifetime", "0"], 2, ["--lifetime"]),
        (["--connection-string", CS, "--lifetime", "soon"], 2, ["--lifetime", "soon"]),
        (["--connection-string", CS, "--style", "java"], 2, ["--style"]),
        (["--namespace", "h:1", "--key-file", "/nonexistent/key"], 1, ["/nonexistent/key"]),
    ],
)
def test_errors_are_one_sentence(capsys, args, code, words):
    assert main(["token", *args]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("txhyco token: error: ")
    for word in words:
        assert word in lines[0]
    assert KEY not in captured.err


def test_help_shows_example(capsys):
    assert main(["token", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "txhyco token --path myhc" in out and "process listings" in out


def test_as_a_process(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"HYCO_CONNECTION_STRING": CS, "PATH": os.environ.get("PATH", ""), "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-m", "txhyco.cli", "token", "--path", "p"], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    verify(done.stdout.strip(), "p")
