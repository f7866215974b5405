"""TLS contexts from PEM files, for every TCP listener and client (manager ``--listen`` and plugin
``--listen-tcp`` alike), with one-line errors naming the option and the file.

* :func:`tls_contexts` - ``--tls-cert`` / ``--tls-key`` / ``--tls-ca`` -> (server, client)
  contexts, checked before anything listens.
* :func:`tls_client_context` - what a client verifies an ``https://`` peer with: the CA bundle
  given, else ``$INFRAKIT_TLS_CA``; with neither, a one-line refusal. A client never falls back to
  trusting whatever certificate it is shown.
"""

from __future__ import annotations

import os
import ssl

from infrakit import errors

__all__ = ["TLS_CA_ENV", "tls_client_context", "tls_contexts"]

#: The CA bundle (PEM) clients verify ``https://`` plugins with, when no ``--tls-ca`` is given.
TLS_CA_ENV = "INFRAKIT_TLS_CA"


def tls_contexts(
    cert: str | None,
    key: str | None,
    ca: str | None,
    who: str,
    *,
    system_trust: bool = False,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The (server, client) contexts for ``who`` (``manager``, ``plugin start``).

    ``cert`` (+ ``key``) serves TLS; ``ca`` verifies peers. Without ``ca`` the client context is
    ``$INFRAKIT_TLS_CA``'s, or (``system_trust``, the manager's documented behaviour) the system
    CAs when ``cert`` is given, else None. Every unreadable file or mismatched key is a
    :class:`~infrakit.errors.SpecError` naming the option and the file.
    """
    if key and not cert:
        raise errors.SpecError(
            f"{who} --tls-key {key}: given without --tls-cert; pass the certificate too"
        )
    server = None
    if cert:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            server.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            what = f"--tls-cert {cert}" + (f" --tls-key {key}" if key else "")
            raise errors.SpecError(
                f"{who} {what}: cannot load the certificate and key ({_reason(exc)}); "
                "expected PEM files, the key matching the certificate"
            ) from None
    if ca:
        return server, _load_ca(ca, f"{who} --tls-ca")
    if os.environ.get(TLS_CA_ENV):
        return server, _load_ca(os.environ[TLS_CA_ENV], TLS_CA_ENV)
    if cert and system_trust:
        return server, ssl.create_default_context()
    return server, None


def tls_client_context(ca: str | None, who: str) -> ssl.SSLContext:
    """The context that verifies an ``https://`` peer for ``who`` (``plugin group at https://...``):
    ``ca``, else ``$INFRAKIT_TLS_CA``; neither is a one-line SpecError."""
    if ca:
        return _load_ca(ca, f"{who} --tls-ca")
    if os.environ.get(TLS_CA_ENV):
        return _load_ca(os.environ[TLS_CA_ENV], TLS_CA_ENV)
    raise errors.SpecError(
        f"{who}: an https:// address needs a CA bundle to verify its certificate; set "
        f"{TLS_CA_ENV}=ca.pem (or pass --tls-ca) with the CA that signed it"
    )


def _load_ca(ca: str, what: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise errors.SpecError(
            f"{what} {ca}: cannot load the CA bundle ({_reason(exc)}); "
            "expected a PEM file of CA certificates"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)
