"""calico-bgp: keep this host's BIRD config equal to what the datastore says (Calico's confd role).

Dataflow::

    Syncer(nodes, bgppeers, bgpconfigurations, ippools, /calico/ipam/v2/host/<me>/ipv{4,6}/block/)
        │ on_updates (syncer thread): update the key -> value cache, set dirty
        ▼
    main loop: once in sync and dirty -> model.build -> (model changed?) render -> bird -p -> write
        bird.cfg atomically -> birdc configure (retried each second until BIRD answers)

BIRD itself is started and restarted by calico-node (``bird -f -c bird.cfg -s bird.ctl``); it reads
the current file whenever it starts, so a configure that fails because BIRD is down is harmless.
Environment: ``NODENAME`` (else the hostname), ``CALICO_RUN_DIR`` (default /var/run/calico), the
datastore variables (``ETCD_ENDPOINTS``...).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from calico.bgp import birdctl, model, render
from calico.datastore import config as ds_config
from calico.datastore.backend import Backend
from calico.datastore.syncer import Syncer, SyncStatus, Update
from calico.model import kinds

logger = logging.getLogger("calico.bgp")

DEFAULT_RUN_DIR = "/var/run/calico"
IPAM_HOST_PREFIX = "/calico/ipam/v2/host/"
_KINDS = ("Node", "BGPPeer", "BGPConfiguration", "IPPool")


def affinity_prefix(node_name: str, version: int = 4) -> str:
    return f"{IPAM_HOST_PREFIX}{node_name}/ipv{version}/block/"


def watched_prefixes(node_name: str) -> list[str]:
    return [kinds.KINDS[k].prefix() for k in _KINDS] + [
        affinity_prefix(node_name, 4),
        affinity_prefix(node_name, 6),
    ]


class BgpRenderer:
    """The cache of watched keys plus the render/configure step (see the module docstring)."""

    def __init__(
        self, node_name: str, *, cfg_path: Path, sock_path: Path, bird: str = "bird"
    ) -> None:
        self.node_name = node_name
        self.cfg_path = cfg_path
        self.sock_path = sock_path
        self.bird = bird
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.dirty = threading.Event()
        self.in_sync = False
        self.synced = threading.Event()
        self._model: model.BirdModel | None = None
        self.configure_pending = False
        self.renders = 0  # configs written (for tests and logs)
        self.last_error = ""  # why the last pass did not produce a config ("" = it did)

    # ---- syncer callbacks (syncer thread) ------------------------------------------------------

    def on_updates(self, updates: list[Update]) -> None:
        with self._lock:
            for u in updates:
                if u.value is None:
                    self._cache.pop(u.key, None)
                else:
                    self._cache[u.key] = u.value
        self.dirty.set()

    def on_status(self, status: SyncStatus) -> None:
        logger.info("datastore sync status: %s", status.value)
        if status is SyncStatus.IN_SYNC:
            self.in_sync = True
            self.synced.set()
            self.dirty.set()

    # ---- main loop ------------------------------------------------------------------------------

    def build(self) -> model.BirdModel:
        nodes: dict[str, Any] = {}
        peers: list[Any] = []
        pools: list[Any] = []
        bgpconfig: Any = None
        affinities: dict[str, Any] = {}
        aff_prefixes = (affinity_prefix(self.node_name, 4), affinity_prefix(self.node_name, 6))
        with self._lock:
            items = list(self._cache.items())
        for key, value in items:
            if key.startswith(aff_prefixes):
                net, _, plen = key.rsplit("/", 1)[-1].rpartition("-")
                affinities[f"{net}/{plen}"] = value
                continue
            parsed = kinds.parse_key(key)
            if parsed is None or not isinstance(value, dict):
                continue
            kind, _, name = parsed
            if kind.name == "Node":
                nodes[name] = value
            elif kind.name == "BGPPeer":
                peers.append(value)
            elif kind.name == "IPPool":
                pools.append(value)
            elif kind.name == "BGPConfiguration" and name == "default":
                bgpconfig = value
        return model.build(
            self.node_name,
            nodes=nodes,
            bgppeers=peers,
            bgpconfig=bgpconfig,
            pools=pools,
            affinities=affinities,
        )

    def reconcile(self) -> None:
        """One pass: rebuild the model; render, validate, install and configure if it changed."""
        self.dirty.clear()
        try:
            new = self.build()
        except model.ModelError as exc:
            logger.warning("not rendering BIRD config yet: %s", exc)
            self.last_error = str(exc)
            return
        if new != self._model:
            try:
                if render.install(render.render(new), self.cfg_path, bird=self.bird):
                    self.renders += 1
                    logger.info(
                        "wrote %s (%d peers, %d blocks)",
                        self.cfg_path,
                        len(new.peers),
                        len(new.blocks),
                    )
                    self.configure_pending = True
                self._model = new
            except render.RenderError as exc:
                logger.error("rendered config rejected; keeping the previous one: %s", exc)
                self.last_error = str(exc)
                return
        self.last_error = ""
        if self.configure_pending:
            self._configure()

    def _configure(self) -> None:
        if not self.sock_path.exists():
            return  # BIRD is not up: it reads the file when it starts
        try:
            birdctl.configure(self.sock_path)
            self.configure_pending = False
            logger.info("BIRD reconfigured")
        except birdctl.BirdError as exc:
            logger.warning("birdc configure failed (will retry): %s", exc)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.dirty.wait(1.0)
            if stop.is_set():
                break
            if self.in_sync and (self.dirty.is_set() or self.configure_pending):
                self.dirty.clear()
                stop.wait(0.05)  # coalesce a burst of updates into one render
                self.reconcile()


def node_name_from_env(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return env.get("NODENAME") or socket.gethostname().lower()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calico-bgp", description=__doc__.split("\n")[0])
    parser.add_argument("--node-name", default=None, help="default: $NODENAME, else the hostname")
    parser.add_argument(
        "--run-dir", default=None, help="default: $CALICO_RUN_DIR or /var/run/calico"
    )
    parser.add_argument("--once", action="store_true", help="render once and exit")
    parser.add_argument("--bird", default="bird", help="bird binary used for `bird -p` checks")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("CALICO_BGP_LOGLEVEL", "INFO").upper(),
        format="%(asctime)s [%(levelname)s] calico-bgp: %(message)s",
    )
    run_dir = Path(args.run_dir or os.environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = args.node_name or node_name_from_env()
    try:
        backend: Backend = ds_config.load().backend()
    except ds_config.ConfigError as exc:
        print(f"calico-bgp: {exc}", file=sys.stderr)
        sys.exit(2)
    renderer = BgpRenderer(
        name, cfg_path=run_dir / "bird.cfg", sock_path=run_dir / "bird.ctl", bird=args.bird
    )
    stop = threading.Event()
    syncer = Syncer(
        backend,
        watched_prefixes(name),
        on_updates=renderer.on_updates,
        on_status=renderer.on_status,
    )
    syncer.start()
    if args.once:
        if not renderer.synced.wait(30):
            print("calico-bgp: datastore did not sync within 30s", file=sys.stderr)
            sys.exit(1)
        renderer.reconcile()
        syncer.stop()
        sys.exit(1 if renderer.last_error else 0)

    def on_signal(*_: object) -> None:
        stop.set()
        renderer.dirty.set()  # wake the loop now

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    logger.info("calico-bgp for node %s, config %s", name, renderer.cfg_path)
    renderer.run(stop)
    syncer.stop()
