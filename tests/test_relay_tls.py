"""The relay over TLS with a self-signed certificate: trusted clients connect, others fail."""
from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer, ssl

from tests.support.wsclient import HandshakeFailed, Leg, ws_connect
from txhyco.protocol.addresses import Namespace, connect_url, listen_url
from txhyco.protocol.sas import dotnet_audience, sign_token
from txhyco.relay.tls import write_self_signed
from txhyco.testing import start_relay


@pytest.fixture
def tls_files(tmp_path):
    return write_self_signed(str(tmp_path / "tls"))


@pytest.fixture
def tls_relay(tls_files):
    running = pytest_twisted.blockon(start_relay(tls=tls_files))
    yield running
    pytest_twisted.blockon(running.stop())


def trusting(cert_path: str, hostname: str = "127.0.0.1"):
    with open(cert_path, "rb") as f:
        return ssl.optionsForClientTLS(hostname, trustRoot=ssl.Certificate.loadPEM(f.read()))


def wss_connect(url: str, context, *, headers=None, cls=Leg) -> defer.Deferred:
    """tests.support.wsclient.ws_connect over TLS."""
    return ws_connect(url, context=context, headers=headers, cls=cls)


def token(relay, path: str, host: str | None = None) -> dict:
    from twisted.internet import reactor

    rule = relay.rule
    audience = dotnet_audience(f"https://{host or relay.host}/{path}")
    return {"ServiceBusAuthorization": sign_token(audience, rule.name, rule.primary_key, int(reactor.seconds()) + 600)}


class TlsEchoListener(Leg):
    """A listener control channel that accepts over wss:// and echoes on the rendezvous."""

    context = None
    legs: list

    def onMessage(self, payload, isBinary):
        accept = json.loads(payload).get("accept")
        if accept is not None:
            assert accept["address"].startswith("wss://")
            wss_connect(accept["address"], self.context, cls=EchoLeg).addCallback(self.legs.append)


class EchoLeg(Leg):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def test_self_signed_files(tls_files):
    cert, key = tls_files
    with open(cert, "rb") as f:
        pem = f.read()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    import os
    import stat

    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert write_self_signed(os.path.dirname(cert)) == tls_files  # reused, not regenerated
    with open(cert, "rb") as f:
        assert f.read() == pem


def test_connection_string_has_no_emulator_flag(tls_relay):
    cs = tls_relay.connection_string
    assert not cs.use_development_emulator
    assert "UseDevelopmentEmulator" not in cs.format()
    assert cs.namespace.secure


@pytest_twisted.inlineCallbacks
def test_trusting_client_round_trips_over_wss(tls_relay, tls_files):
    context = trusting(tls_files[0])
    ns = Namespace.parse(tls_relay.host, secure=True)
    listener_cls = type("Bound", (TlsEchoListener,), {"context": context, "legs": []})
    control = yield wss_connect(listen_url(ns, "secure"), context, headers=token(tls_relay, "secure"), cls=listener_cls)
    sender = yield wss_connect(connect_url(ns, "secure"), context, headers=token(tls_relay, "secure"))
    sender.sendMessage(b"over TLS", isBinary=False)
    assert (yield sender.messages.get()) == (b"over TLS", False)
    sender.sendClose(1000)
    yield sender.closed
    control.sendClose(1000)
    yield control.closed


@pytest_twisted.inlineCallbacks
def test_trust_by_localhost_name(tls_relay, tls_files):
    ns = Namespace.parse(f"localhost:{tls_relay.port}", secure=True)
    context = trusting(tls_files[0], "localhost")
    control = yield wss_connect(listen_url(ns, "named"), context, headers=token(tls_relay, "named", "localhost"))
    control.sendClose(1000)
    yield control.closed


@pytest_twisted.inlineCallbacks
def test_client_that_does_not_trust_the_certificate_fails(tls_relay):
    ns = Namespace.parse(tls_relay.host, secure=True)
    context = ssl.optionsForClientTLS("127.0.0.1")  # the platform's trust store only
    with pytest.raises(HandshakeFailed) as info:
        yield wss_connect(listen_url(ns, "secure"), context, headers=token(tls_relay, "secure"))
    assert info.value.status is None  # no HTTP answer: the TLS handshake failed


@pytest_twisted.inlineCallbacks
def test_plain_ws_to_a_tls_port_fails(tls_relay):
    from tests.support.wsclient import ws_connect

    ns = Namespace.parse(tls_relay.host, secure=False)
    with pytest.raises(HandshakeFailed):
        yield ws_connect(listen_url(ns, "secure"), headers=token(tls_relay, "secure"))


def test_bad_tls_files_give_one_line(tmp_path, capsys):
    from txhyco.cli import main

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    assert main(["relay", "--tls-cert", str(bad), "--tls-key", str(bad)]) == 1
    assert main(["relay", "--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "bad.pem holds no valid PEM certificate" in err[0]
    assert "none.pem" in err[1]


def _stdlib_handshake(port: int, cafile: str, alpn: list[str]) -> str | None:
    import socket
    import ssl as stdlib_ssl

    context = stdlib_ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status = tls.recv(100).split(b"\r\n")[0]
            assert status.startswith(b"HTTP/1.1 401"), status
            return tls.selected_alpn_protocol()


@pytest_twisted.inlineCallbacks
def test_clients_offering_alpn_get_http11(tls_relay, tls_files):
    """curl, browsers and .NET offer ALPN; Twisted alone would answer them with a fatal alert."""
    from twisted.internet import threads

    chosen = yield threads.deferToThread(_stdlib_handshake, tls_relay.port, tls_files[0], ["h2", "http/1.1"])
    assert chosen == "http/1.1"
    chosen = yield threads.deferToThread(_stdlib_handshake, tls_relay.port, tls_files[0], [])
    assert chosen is None


def test_certificate_chain_and_mismatched_key(tmp_path):
    from txhyco.protocol.errors import ProtocolError
    from txhyco.relay.tls import server_context

    cert_a, key_a = write_self_signed(str(tmp_path / "a"))
    cert_b, key_b = write_self_signed(str(tmp_path / "b"))
    chain = tmp_path / "chain.pem"
    with open(cert_a, "rb") as a, open(cert_b, "rb") as b:
        chain.write_bytes(a.read() + b.read())
    options = server_context(str(chain), key_a)
    assert len(options.extraCertChain) == 1
    with pytest.raises(ProtocolError, match="does not belong"):
        server_context(cert_a, key_b)
    with pytest.raises(ProtocolError, match="no valid PEM private key"):
        server_context(cert_a, cert_a)
    with pytest.raises(ProtocolError, match="no valid PEM certificate"):
        server_context(key_a, key_a)


def test_tls_failures_are_told_apart_with_the_fix(tls_files):
    from cryptography import x509
    from OpenSSL import SSL
    from service_identity import VerificationError
    from service_identity.cryptography import verify_certificate_hostname
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    from txhyco._twisted.clienttls import tls_failure

    untrusted = SSL.Error([("SSL routines", "", "certificate verify failed")])
    assert "ca_file=" in tls_failure(Failure(untrusted)) and "--ca-file" in tls_failure(untrusted)
    other = tls_failure(SSL.Error([("SSL routines", "", "sslv3 alert handshake failure")]))
    assert other == "the TLS handshake with the relay failed (sslv3 alert handshake failure)"
    plain = tls_failure(SSL.Error([("SSL routines", "", "wrong version number")]))
    assert "speaks plain" in plain and "UseDevelopmentEmulator=true" in plain
    with open(tls_files[0], "rb") as pem:
        certificate = x509.load_pem_x509_certificate(pem.read())
    with pytest.raises(VerificationError) as wrong_name:  # what Twisted's hostname check raises
        verify_certificate_hostname(certificate, "relay.example")
    mismatch = tls_failure(wrong_name.value)
    assert "not for the name connected to" in mismatch and "relay.example" in mismatch
    assert tls_failure(Failure(ConnectionLost())) is None and tls_failure(None) is None
