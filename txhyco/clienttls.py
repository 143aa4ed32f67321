"""TLS for txhyco's client connections: verification on, always.

Certificates and host names are checked with pyOpenSSL and service-identity
(Twisted's ``optionsForClientTLS``). A relay with a self-signed certificate
is trusted by passing its PEM as ``ca_file``; there is no switch to turn
verification off.
"""
from __future__ import annotations

from twisted.internet import ssl

from txhyco.errors import RelayError


def client_tls_options(host: str, ca_file: str | None = None):
    """Client TLS options for ``host``, trusting ``ca_file`` instead of the system roots if given."""
    trust_root = None
    if ca_file:
        try:
            with open(ca_file, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise RelayError(f"Cannot read the CA file {ca_file}: {e.strerror}.") from None
        try:
            trust_root = ssl.Certificate.loadPEM(pem)
        except Exception:
            raise RelayError(f"The CA file {ca_file} does not hold a PEM certificate.") from None
    else:
        trust_root = ssl.platformTrust()
    return ssl.optionsForClientTLS(host, trustRoot=trust_root)
