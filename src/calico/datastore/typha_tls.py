"""TLS between Typha and its clients, as Calico sets it up (both sides verify the other).

Typha: ``TYPHA_CAFILE``, ``TYPHA_SERVERCERTFILE``, ``TYPHA_SERVERKEYFILE`` and at least one of
``TYPHA_CLIENTCN`` / ``TYPHA_CLIENTURISAN``: a client must present a certificate signed by the
CA whose Common Name or one of whose URI SANs is the one given. The agent: ``FELIX_TYPHACAFILE``,
``FELIX_TYPHACERTFILE``, ``FELIX_TYPHAKEYFILE`` and ``FELIX_TYPHACN`` / ``FELIX_TYPHAURISAN``
for the server's certificate (which is checked by that identity, not by host name: a client
reaches Typha by address). Either side with some but not all of them set is a configuration
error naming what is missing (:func:`check`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


class TLSConfigError(ValueError):
    """Some TLS settings given without the others (the message names the variables)."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """One side's files and the identity it requires of its peer (CN and/or URI SAN)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    peer_cn: str = ""
    peer_uri_san: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


def check(settings: TLSSettings, names: tuple[str, str, str, str, str]) -> None:
    """All three files or none, and with them a peer identity; ``names`` are the variables (CA,
    cert, key, CN, URI SAN) the message cites."""
    files = (settings.ca_file, settings.cert_file, settings.key_file)
    if not any(files):
        return
    missing = [n for n, v in zip(names[:3], files, strict=True) if not v]
    if missing:
        raise TLSConfigError(
            f"TLS to/from Typha needs {', '.join(names[:3])}: {', '.join(missing)} not set"
        )
    if not settings.peer_cn and not settings.peer_uri_san:
        raise TLSConfigError(f"TLS to/from Typha needs {names[3]} or {names[4]} (neither is set)")


def identity(cert: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The Common Name and URI SANs of a peer certificate as ``getpeercert()`` decodes it."""
    if not cert:
        return "", []
    cn = ""
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                cn = value
    uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
    return cn, uris


def peer_problem(cert: dict[str, Any] | None, settings: TLSSettings) -> str:
    """Why a verified peer certificate is not the one wanted ("" when it is)."""
    cn, uris = identity(cert)
    if settings.peer_cn and cn == settings.peer_cn:
        return ""
    if settings.peer_uri_san and settings.peer_uri_san in uris:
        return ""
    wanted = " or ".join(
        w
        for w in (
            f"CN {settings.peer_cn!r}" if settings.peer_cn else "",
            f"URI SAN {settings.peer_uri_san!r}" if settings.peer_uri_san else "",
        )
        if w
    )
    return f"certificate has CN {cn!r} and URI SANs {uris}; wanted {wanted}"


def _load(ctx: ssl.SSLContext, settings: TLSSettings) -> None:
    try:
        ctx.load_verify_locations(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"CA file {settings.ca_file}: {exc}") from exc
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"certificate {settings.cert_file} / key {settings.key_file}: {exc}"
        ) from exc


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, settings)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(settings: TLSSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # checked by CN / URI SAN instead (peer_problem)
    _load(ctx, settings)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


__all__ = [
    "TLSConfigError",
    "TLSSettings",
    "check",
    "client_context",
    "identity",
    "peer_problem",
    "server_context",
]
