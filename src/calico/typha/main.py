"""calico-typha: one syncer per syncer type on the datastore, served to many clients.

::

    datastore ──Syncer (thread, one per syncer type)──> encode each entry once (msgpack)
                                                          │ call_soon_threadsafe
    event loop (main thread): Server.on_changes / on_status ──> Cache ──> every client (server.py)
    health (/liveness, /readiness) and /metrics: HTTP threads

Syncer types: ``felix`` (the agent's prefixes, ``calico.calc.graph.watched_prefixes``). Exit
codes: 0 on SIGTERM/SIGINT, 1 when it cannot serve (the port is taken), 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from calico.calc import graph as calc_graph
from calico.datastore import config as ds_config
from calico.datastore import typha_tls
from calico.datastore import typha_wire as wire
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.lib import health as lib_health
from calico.typha import config as typha_config
from calico.typha.cache import Cache
from calico.typha.metrics import Metrics
from calico.typha.server import Server, ServerConfig

logger = logging.getLogger("calico.typha")

SYNCER_PREFIXES: dict[str, Callable[[], list[str]]] = {"felix": calc_graph.watched_prefixes}


def server_config(cfg: typha_config.Config, name: str) -> ServerConfig:
    return ServerConfig(
        name=name,
        max_conns=cfg["MaxConnectionsUpperLimit"],
        max_fall_behind=cfg["ServerMaxFallBehindSecs"],
        new_client_grace=cfg["ServerNewClientFallBehindGracePeriod"],
        ping_interval=cfg["ServerPingIntervalSecs"],
        pong_timeout=cfg["ServerPongTimeoutSecs"],
        handshake_timeout=cfg["ServerHandshakeTimeoutSecs"],
        write_buffer=cfg["ServerWriteBufferSize"],
        tls=cfg.tls(),
    )


class Typha:
    """The daemon, runnable in a thread (tests) or as the process (``main``)."""

    def __init__(
        self,
        cfg: typha_config.Config,
        datastore: ds_config.DatastoreConfig,
        *,
        name: str = "",
    ) -> None:
        self.cfg = cfg
        self.name = name or f"{socket.gethostname()}/{os.getpid()}"
        self.metrics = Metrics()
        self.health = lib_health.Health()
        self.caches = {
            t: Cache(
                max_batch=cfg["SnapshotCacheMaxBatchSize"],
                max_message=cfg["ServerMaxMessageSize"],
                max_bytes=cfg["ServerMaxFallBehindBytes"],
            )
            for t in SYNCER_PREFIXES
        }
        self.server = Server(self.caches, server_config(cfg, self.name), self.metrics)
        self.loop = asyncio.new_event_loop()
        self._top: dict[str, int] = dict.fromkeys(SYNCER_PREFIXES, 0)  # newest revision seen
        self.syncers = {
            t: Syncer(
                datastore.backend(),  # the configured datastore's (etcd or Kubernetes)
                prefixes(),
                on_updates=self._on_updates(t),
                on_status=self._on_status(t),
            )
            for t, prefixes in SYNCER_PREFIXES.items()
        }
        self.started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._http: list[Any] = []

    # ---- syncer threads -> loop ---------------------------------------------------------------

    def _on_updates(self, syncer_type: str) -> Callable[[list[Update]], None]:
        def on_updates(updates: list[Update]) -> None:
            entries = [
                (
                    u.key,
                    u.revision,
                    None if u.value is None else wire.encode_entry(u.key, u.revision, u.value),
                )
                for u in updates
            ]
            rev = max(u.revision for u in updates)
            self._top[syncer_type] = max(self._top[syncer_type], rev)
            self.loop.call_soon_threadsafe(self.server.on_changes, syncer_type, entries, rev)

        return on_updates

    def _on_status(self, syncer_type: str) -> Callable[[SyncStatus], None]:
        def on_status(status: SyncStatus) -> None:
            rev = self._top[syncer_type]
            if syncer_type in self.syncers:  # the syncer's own mark: past the newest key's
                rev = max(rev, getattr(self.syncers[syncer_type], "revision", 0))
            self.loop.call_soon_threadsafe(self.server.on_status, syncer_type, status.value, rev)

        return on_status

    # ---- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    def stop(self) -> None:
        """From any thread."""
        if self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)

    async def _main(self) -> int:
        self._stopping = asyncio.Event()
        try:
            await self.server.start(self.cfg["ServerHost"], self.cfg["ServerPort"])
        except OSError as exc:
            logger.critical(
                "cannot listen on %s:%s: %s", self.cfg["ServerHost"], self.cfg["ServerPort"], exc
            )
            return 1
        self._serve_http()
        for syncer in self.syncers.values():
            syncer.start()
        self.started.set()
        try:
            while not self._stopping.is_set():
                self._beat()
                try:
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            for syncer in self.syncers.values():
                syncer.stop()
            await self.server.stop()
            for http in self._http:
                http.shutdown()
                http.server_close()
        return 0

    def _beat(self) -> None:
        in_sync = {t: c.status == SyncStatus.IN_SYNC.value for t, c in self.caches.items()}
        self.health.ready = all(in_sync.values())
        self.health.detail = {
            "in_sync": in_sync,
            "connections": len(self.server.conns),
            "port": self.server.port,
        }
        self.health.beat()

    def _serve_http(self) -> None:
        cfg = self.cfg
        health = self.health if cfg["HealthEnabled"] else None
        registry = self.metrics.registry if cfg["PrometheusMetricsEnabled"] else None
        if health is not None and registry is not None:
            same = (cfg["HealthHost"], cfg["HealthPort"]) == (
                cfg["PrometheusMetricsHost"],
                cfg["PrometheusMetricsPort"],
            )
            if same:
                server = lib_health.serve(cfg["HealthHost"], cfg["HealthPort"], health=health,
                                          registry=registry, thread="typha-http")  # fmt: skip
                self._http.append(server)
                return
        if health is not None:
            self._http.append(
                lib_health.serve(
                    cfg["HealthHost"],
                    cfg["HealthPort"],
                    health=health,
                    registry=None,
                    thread="typha-health",
                )
            )
        if registry is not None:
            self._http.append(
                lib_health.serve(
                    cfg["PrometheusMetricsHost"] or "0.0.0.0",
                    cfg["PrometheusMetricsPort"],
                    health=None,
                    registry=registry,
                    thread="typha-metrics",
                )
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-typha", description="Calico's syncer fan-out")
    parser.parse_args(argv)
    env = dict(os.environ)
    logging.basicConfig(
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        cfg = typha_config.load(env)
        datastore = ds_config.load(env=env)
        typha = Typha(cfg, datastore)
    except (
        typha_config.ConfigError,
        ds_config.ConfigError,
        typha_tls.TLSConfigError,
        ValueError,
    ) as exc:
        print(f"calico-typha: configuration error: {exc}", file=sys.stderr)
        return 2
    level = cfg["LogSeverityScreen"]
    logging.getLogger().setLevel(logging.CRITICAL + 10 if level == "NONE" else level)
    signal.signal(signal.SIGTERM, lambda *_: typha.stop())
    signal.signal(signal.SIGINT, lambda *_: typha.stop())
    return typha.run()


if __name__ == "__main__":
    sys.exit(main())
