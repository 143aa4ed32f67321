"""TLS for txhyco's client connections: verification on, always.

Certificates and host names are checked with pyOpenSSL and service-identity
(Twisted's ``optionsForClientTLS``). A relay with a self-signed certificate
is trusted by passing its PEM as ``ca_file``; there is no switch to turn
verification off.
"""
from __future__ import annotations

from twisted.internet import ssl

from txhyco.errors import RelaySettingError


def client_tls_options(host: str, ca_file: str | None = None):
    """Client TLS options for ``host``, trusting ``ca_file`` instead of the system roots if given."""
    trust_root = None
    if ca_file:
        try:
            with open(ca_file, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise RelaySettingError(f"Cannot read the CA file {ca_file}: {e.strerror}.") from None
        try:
            trust_root = ssl.Certificate.loadPEM(pem)
        except Exception:
            raise RelaySettingError(f"The CA file {ca_file} does not hold a PEM certificate.") from None
    else:
        trust_root = ssl.platformTrust()
    return ssl.optionsForClientTLS(host, trustRoot=trust_root)


def tls_failure(error) -> str | None:
    """Why a TLS handshake with the relay failed, with the fix, or None if ``error`` (or Failure) is not one."""
    from OpenSSL import SSL
    from service_identity import VerificationError

    value = getattr(error, "value", error)
    if isinstance(value, VerificationError):
        names = ", ".join(str(getattr(m, "mismatched_id", m)) for m in value.errors) or "this host"
        return (f"the relay's TLS certificate is not for the name connected to ({names}): "
                "connect with a name the certificate was issued for")
    if not isinstance(value, SSL.Error):
        return None
    reasons = value.args[0] if value.args and isinstance(value.args[0], list) else []
    detail = "; ".join(r[-1] for r in reasons if isinstance(r, tuple) and r and r[-1]) or str(value) or "no detail"
    if "certificate verify failed" in detail:
        return ("the relay's TLS certificate is not trusted here (certificate verify failed); for a relay "
                "with a self-signed or private CA certificate, pass that certificate as ca_file= "
                "(--ca-file on the command line, caFile= in a hyco: string)")
    if "wrong version number" in detail:  # OpenSSL's words for a plain-text answer to its ClientHello
        return (f"the TLS handshake with the relay failed ({detail}): the relay speaks plain http:// and ws://, "
                "not TLS; add UseDevelopmentEmulator=true to the connection string or drop tls (tls=no in a hyco: string)")
    return f"the TLS handshake with the relay failed ({detail})"
