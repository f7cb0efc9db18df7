"""Client TLS settings shared by the transports' options: the server's CA and a client certificate.

Options classes with TLS (NATS, Kafka, Redis) carry ``tls``, ``tls_ca``, ``tls_cert`` and
``tls_key``; giving any file implies ``tls``. ``tls_cert`` (with its private key in ``tls_key``,
or in the same file) is presented to servers that require client certificates (mutual TLS).
"""

from __future__ import annotations

import ssl

__all__ = ["check_client_certificate", "client_context", "wants_tls"]


def wants_tls(tls: bool, ca: str | None, cert: str | None) -> bool:
    """Whether to connect with TLS: asked for, or implied by a CA or certificate file."""
    return tls or ca is not None or cert is not None


def check_client_certificate(scheme: str, cert: str | None, key: str | None) -> None:
    """Raise ValueError for a key given without its certificate (no I/O: files are read later)."""
    if key is not None and cert is None:
        raise ValueError(f"{scheme} option tls_key needs tls_cert, the certificate it belongs to")


def client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A client context verifying servers with ``ca`` (the system's CAs when None) and
    presenting ``cert`` (its key in ``key``, or in ``cert`` itself) when given.

    Raises ValueError naming the file that cannot be read or is not a certificate or key.
    """
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(name for name in (ca, cert, key) if name)
        raise ValueError(f"cannot load the TLS files {files}: {exc}") from exc
    return context
