"""Where the agent's updates come from: the datastore's syncer, or a Typha when one is configured.

``FELIX_TYPHAADDR`` (``host:port``, or a comma-separated list) or ``FELIX_TYPHAK8SSERVICENAME``
(the Service's endpoints in ``FELIX_TYPHAK8SNAMESPACE``, looked up before every connection
round) select Typha; with neither set the agent syncs from the datastore itself, as before. Both
feeds have one interface (``start``/``stop``, ``on_updates(list[Update])``,
``on_status(SyncStatus)``) and one contract, so nothing past this module knows which it has.
TLS: ``FELIX_TYPHACAFILE``, ``FELIX_TYPHACERTFILE``, ``FELIX_TYPHAKEYFILE`` with
``FELIX_TYPHACN`` or ``FELIX_TYPHAURISAN`` (all or none; a partial set stops the agent with exit
2, naming what is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from calico.agent import config as agent_config
from calico.datastore.syncer import SyncStatus, Update

TLS_NAMES = (
    "FELIX_TYPHACAFILE",
    "FELIX_TYPHACERTFILE",
    "FELIX_TYPHAKEYFILE",
    "FELIX_TYPHACN",
    "FELIX_TYPHAURISAN",
)


class Feed(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def wanted(cfg: agent_config.Config) -> bool:
    return bool(cfg["TyphaAddr"] or cfg["TyphaK8sServiceName"])


def check(cfg: agent_config.Config) -> None:
    """Raise ConfigError for a partial TLS configuration or files that do not load (only when
    Typha is used)."""
    if not wanted(cfg):
        return
    from calico.datastore import typha_tls

    try:
        typha_tls.check(_tls(cfg), TLS_NAMES)
        if _tls(cfg).enabled:
            typha_tls.client_context(_tls(cfg))  # the files load (else: which and why)
    except typha_tls.TLSConfigError as exc:
        raise agent_config.ConfigError(str(exc)) from exc


def _tls(cfg: agent_config.Config) -> Any:
    from calico.datastore import typha_tls

    return typha_tls.TLSSettings(
        ca_file=cfg["TyphaCAFile"],
        cert_file=cfg["TyphaCertFile"],
        key_file=cfg["TyphaKeyFile"],
        peer_cn=cfg["TyphaCN"],
        peer_uri_san=cfg["TyphaURISAN"],
    )


def addresses(cfg: agent_config.Config, env: dict[str, str]) -> Callable[[], Sequence[str]]:
    fixed: tuple[str, ...] = cfg["TyphaAddr"]
    if fixed:
        return lambda: fixed
    from calico.datastore import typha_discovery

    name, namespace = cfg["TyphaK8sServiceName"], cfg["TyphaK8sNamespace"]
    return lambda: typha_discovery.service_addresses(name, namespace, env=env)


def feed(
    cfg: agent_config.Config,
    env: dict[str, str],
    *,
    prefixes: Sequence[str],
    on_updates: Callable[[list[Update]], None],
    on_status: Callable[[SyncStatus], None],
) -> Feed:
    """A TyphaSyncer for the agent (call only when :func:`wanted`)."""
    from calico.datastore.typha_client import TyphaSyncer

    return TyphaSyncer(
        addresses(cfg, env),
        node=cfg["FelixHostname"],
        on_updates=on_updates,
        on_status=on_status,
        prefixes=prefixes,
        tls=_tls(cfg),
        read_timeout=cfg["TyphaReadTimeout"],
        write_timeout=cfg["TyphaWriteTimeout"],
    )
