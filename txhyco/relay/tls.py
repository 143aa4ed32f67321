"""TLS for the relay: a certificate from files, or a self-signed one for localhost."""
from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from txhyco.protocol.errors import LocalProtocolError

SELF_SIGNED_CERT = "relay-cert.pem"
SELF_SIGNED_KEY = "relay-key.pem"


def write_self_signed(directory: str, *, hosts=("localhost", "127.0.0.1", "::1"), days: int = 825) -> tuple[str, str]:
    """Create (or reuse) a self-signed certificate for ``hosts`` in ``directory``.

    Returns (cert_path, key_path). The certificate file is also what a client
    passes as its CA file (``caFile=`` in endpoint strings, NODE_EXTRA_CA_CERTS
    for Node). The key file is written readable by its owner only.
    """
    os.makedirs(directory, exist_ok=True)
    cert_path = os.path.join(directory, SELF_SIGNED_CERT)
    key_path = os.path.join(directory, SELF_SIGNED_KEY)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txhyco local relay")])
    alt_names = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert_path: str, key_path: str):
    """A Twisted TLS server context factory for the relay's listening port.

    The certificate file may hold a chain (leaf first, then intermediates),
    which is served whole. ALPN offers ``http/1.1``: Twisted answers a client
    that offers ALPN (curl, browsers, .NET) with a fatal alert when the server
    names no protocol at all, and the relay speaks HTTP/1.1 only.
    """
    from OpenSSL.crypto import FILETYPE_PEM
    from twisted.internet import ssl
    from twisted.internet.error import VerifyError

    try:
        with open(cert_path, "rb") as f:
            cert_pem = f.read()
        with open(key_path, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise LocalProtocolError(f"cannot read TLS file {e.filename}: {e.strerror}.") from None
    end = b"-----END CERTIFICATE-----"
    blocks = [block.strip() + b"\n" + end + b"\n" for block in cert_pem.split(end)[:-1]]
    try:  # pyOpenSSL raises several types for bad PEM
        certs = [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception:
        certs = []
    if not certs:
        raise LocalProtocolError(f"the TLS certificate file {cert_path} holds no valid PEM certificate.") from None
    try:
        key = ssl.KeyPair.load(key_pem, FILETYPE_PEM)
    except Exception as e:
        raise LocalProtocolError(f"the TLS key file {key_path} holds no valid PEM private key ({e.__class__.__name__}).") from None
    try:
        leaf = ssl.PrivateCertificate.fromCertificateAndKeyPair(certs[0], key)
    except VerifyError:
        raise LocalProtocolError(f"the TLS key {key_path} does not belong to the certificate {cert_path}.") from None
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=[c.original for c in certs[1:]] or None,
        acceptableProtocols=[b"http/1.1"],
    )
