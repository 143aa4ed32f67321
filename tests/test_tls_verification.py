"""TLS verification is on by default for every client face: an untrusted certificate and a
certificate for another name each fail with a sentence that names the cause and the fix."""
from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol

from tests.support.wsclient import Leg
from tests.test_cli_tunnels import cli, finished
from txhyco.relay.tls import write_self_signed
from txhyco.testing import start_relay
from txhyco.websocket import RelayedServerFactory, connect_relay

UNTRUSTED = "not trusted here (certificate verify failed)"
WRONG_NAME = "not for the name connected to"


@pytest.fixture
def trusted_files(tmp_path):
    return write_self_signed(str(tmp_path / "ok"))  # for localhost and 127.0.0.1


@pytest.fixture
def misnamed_files(tmp_path):
    return write_self_signed(str(tmp_path / "misnamed"), hosts=("relay.example",))


@pytest.fixture
def tls_relay(trusted_files):
    running = pytest_twisted.blockon(start_relay(tls=trusted_files))
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture
def misnamed_relay(misnamed_files):
    running = pytest_twisted.blockon(start_relay(tls=misnamed_files))
    yield running
    pytest_twisted.blockon(running.stop())


def client_string(relay, ca_file=None):
    os.environ["TXHYCO_TLS_TEST_KEY"] = relay.rule.primary_key
    extra = f":caFile={ca_file}" if ca_file else ""
    return f"hyco:127.0.0.1\\:{relay.port}:echo:keyName={relay.rule.name}:keyEnv=TXHYCO_TLS_TEST_KEY{extra}"


class Client(Leg):
    def __init__(self):
        super().__init__()
        self.opened.addErrback(lambda failure: None)  # connect_relay reports it


@pytest_twisted.inlineCallbacks
def test_the_client_endpoint_verifies_by_default(tls_relay, trusted_files, misnamed_relay, misnamed_files):
    endpoint = clientFromString(reactor, client_string(tls_relay))  # no caFile: the platform's trust only
    with pytest.raises(Exception) as info:
        yield endpoint.connect(Factory.forProtocol(Protocol))
    assert UNTRUSTED in str(info.value) and "caFile=" in str(info.value), info.value
    # Trusting the certificate, but it names another host.
    endpoint = clientFromString(reactor, client_string(misnamed_relay, misnamed_files[0]))
    with pytest.raises(Exception) as info:
        yield endpoint.connect(Factory.forProtocol(Protocol))
    assert WRONG_NAME in str(info.value) and "127.0.0.1" in str(info.value), info.value


@pytest_twisted.inlineCallbacks
def test_websocket_senders_and_listeners_verify_by_default(tls_relay, misnamed_relay, misnamed_files):
    with pytest.raises(Exception) as info:
        yield connect_relay(Client, tls_relay.connection_string.format(), path="echo")
    assert UNTRUSTED in str(info.value), info.value
    with pytest.raises(Exception) as info:
        yield connect_relay(Client, misnamed_relay.connection_string.format(), path="echo", ca_file=misnamed_files[0])
    assert WRONG_NAME in str(info.value), info.value
    factory = RelayedServerFactory(tls_relay.connection_string.format(), path="echo")
    with pytest.raises(Exception) as info:
        port = yield factory.listen().addTimeout(30, reactor)
        yield port.stopListening()
    assert UNTRUSTED in str(info.value), info.value
    factory = RelayedServerFactory(misnamed_relay.connection_string.format(), path="echo", ca_file=misnamed_files[0])
    with pytest.raises(Exception) as info:
        port = yield factory.listen().addTimeout(30, reactor)
        yield port.stopListening()
    assert WRONG_NAME in str(info.value), info.value


@pytest_twisted.inlineCallbacks
def test_txhyco_request_names_the_verification_failure_and_the_fix(tls_relay, trusted_files, misnamed_relay, misnamed_files):
    code, out, err = yield finished(cli("request", "echo", "/x", cs=tls_relay.connection_string))
    assert code != 0 and UNTRUSTED in err and "--ca-file" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = yield finished(cli("request", "echo", "/x", "--ca-file", misnamed_files[0], cs=misnamed_relay.connection_string))
    assert code != 0 and WRONG_NAME in err, err
    # Trusted and rightly named: TLS is fine, and the relay answers (no listener there).
    code, out, err = yield finished(cli("request", "echo", "/x", "--ca-file", trusted_files[0], cs=tls_relay.connection_string))
    assert "502" in out + err and UNTRUSTED not in err, (out, err)
