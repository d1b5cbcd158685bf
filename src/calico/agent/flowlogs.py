"""Flow logs in the agent: settings, the NFLOG reader, the interval flush, the rotated files.

The agent's loop calls :meth:`FlowLogs.turn` every turn (at least once a second); every
``FlowLogsFlushInterval`` it drains the collector's aggregation, names what it holds
(``flow_records``) and appends the records to ``<FlowLogsFileDirectory>/flows.log`` (rotated at
``FlowLogsFileMaxFileSizeMB``, ``FlowLogsFileMaxFiles`` files kept). The last records are also
kept in memory for followers.

Control methods (``register``; protocol in agent.md "Control socket"):

* ``flows-flush`` (on the loop): write the interval's records now, so a reader of the files is
  current (``calicoctl flows`` calls it first); answers ``{"written": N, "file": PATH, "seq":
  S}`` (S: the last record's sequence number, where a follower's stream starts).
* ``flows`` (a stream, in the connection's thread): the records kept in memory
  (``params.since``: only those after that sequence number), then, with ``params.follow``, every
  record as it is written, until the client leaves. Each item is ``{"seq": N, "record": {...}}``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from calico.agent import config as agent_config
from calico.agent import control, flow_collect, flow_records
from calico.calc import graph as calc_graph
from calico.dataplane import flowlog_render, loop
from calico.lib import jsonlines

logger = logging.getLogger(__name__)

FILENAME = "flows.log"  # Calico's name for the flow log file
DEFAULT_DIR = "/var/log/calico/flowlogs"
RECENT = 1000  # records kept in memory for the flows stream
CHUNK = 256  # records made, written and kept at a time


def _chunks(items: Iterator[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def directory(cfg: agent_config.Config, env: Mapping[str, str]) -> Path:
    if cfg["FlowLogsFileDirectory"]:
        return Path(cfg["FlowLogsFileDirectory"])
    if env.get("CALICO_LOG_DIR"):
        return Path(env["CALICO_LOG_DIR"]) / "flowlogs"
    return Path(DEFAULT_DIR)


def dataplane_config(cfg: agent_config.Config) -> flowlog_render.FlowLogConfig:
    return flowlog_render.FlowLogConfig(
        enabled=cfg["FlowLogsFileEnabled"],
        denied=cfg["FlowLogsFileEnabledForDenied"],
        allowed=cfg["FlowLogsFileEnabledForAllowed"],
        group=cfg["FlowLogsNflogGroup"],
        rate=cfg["FlowLogsRateLimit"],
        burst=cfg["FlowLogsRateLimit"],
    )


def _iface_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


class FlowLogs:
    def __init__(
        self,
        hostname: str,
        env: Mapping[str, str],
        cfg: agent_config.Config,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.path = directory(cfg, env) / FILENAME
        self._clock = clock
        self.aggregator = flow_collect.Aggregator(cfg["FlowLogsMaxFlows"])
        self.collector: flow_collect.FlowCollector | None = None
        self.writer = jsonlines.RotatingWriter(self.path, max_bytes=1, max_files=1)
        self._recent: list[tuple[int, dict[str, Any]]] = []  # (seq, record), the last RECENT
        self._recent_lock = threading.Condition()
        self._seq = 0
        self.written = 0
        self.overflow = 0
        self._cfg = cfg
        self._next = clock()
        self.configure(cfg)

    def configure(self, cfg: agent_config.Config) -> None:
        self._cfg = cfg
        self.aggregator.max_flows = cfg["FlowLogsMaxFlows"]
        self.writer.max_bytes = cfg["FlowLogsFileMaxFileSizeMB"] << 20
        self.writer.max_files = cfg["FlowLogsFileMaxFiles"]
        self._next = min(self._next, self._clock() + cfg["FlowLogsFlushInterval"])
        if cfg["FlowLogsFileEnabled"] and self.collector is None:
            self.collector = flow_collect.FlowCollector(cfg["FlowLogsNflogGroup"], self.aggregator)
            self.collector.start()
            logger.info("flow logs: reading NFLOG group %d into %s", cfg["FlowLogsNflogGroup"],
                        self.path)  # fmt: skip
        elif not cfg["FlowLogsFileEnabled"] and self.collector is not None:
            self.collector.stop()
            self.collector = None

    def status(self) -> dict[str, Any]:
        """For felix-status.json: where the records go (calicoctl flows reads it) and whether
        they can be collected (a failure does not make the node unready: policy still works)."""
        return {
            "enabled": self.collector is not None,
            "file": str(self.path),
            "error": self.collector.error if self.collector else None,
        }

    def turn(self, dataplane: loop.InternalDataplane, graph: calc_graph.CalcGraph) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._cfg["FlowLogsFlushInterval"]
        self.flush(dataplane, graph)

    def next_deadline(self) -> float:
        return self._next

    def flush(self, dataplane: loop.InternalDataplane, graph: calc_graph.CalcGraph) -> int:
        """Write the interval's records now; how many were written."""
        batch = self.aggregator.drain()
        if batch.overflow:
            self.overflow += batch.overflow
            logger.warning(
                "flow logs: %d packets of flows beyond FlowLogsMaxFlows (%d) not recorded",
                batch.overflow,
                self.aggregator.max_flows,
            )
        if not batch.flows:
            return 0
        ctx = flow_records.Context(
            host=self.hostname,
            points=dataplane.points,
            endpoints=dataplane.endpoints,
            describe=graph.describe_addresses,
            iface_name=_iface_name,
            include_hep=self._cfg["FlowLogsEnableHostEndpoint"],
        )
        count = 0
        for chunk in _chunks(flow_records.records(batch, ctx), CHUNK):
            try:
                self.writer.write(chunk)
            except OSError as exc:
                logger.error("flow logs: cannot write %s: %s", self.path, exc)
            with self._recent_lock:
                for rec in chunk[-RECENT:]:
                    self._seq += 1
                    self._recent.append((self._seq, rec))
                self._seq += max(0, len(chunk) - RECENT)
                del self._recent[:-RECENT]
                self._recent_lock.notify_all()
            count += len(chunk)
        self.written += count
        return count

    def recent(self, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The records kept in memory with a sequence number above ``after`` (thread-safe)."""
        with self._recent_lock:
            return [item for item in self._recent if item[0] > after]

    # ---- control methods ----------------------------------------------------------------------

    def register(
        self,
        registry: control.Registry,
        flush: Callable[[], int],
        *,
        poll: float = 0.5,
    ) -> None:
        """``flush`` runs on the loop (it needs the graph and the dataplane)."""

        def flush_now(params: dict[str, Any]) -> dict[str, Any]:
            written = flush()
            with self._recent_lock:
                seq = self._seq
            return {"written": written, "file": str(self.path), "seq": seq}

        def stream(params: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
            after = params.get("since", 0)
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                raise control.MethodError(f"params.since: want a sequence number, got {after!r}")
            follow = bool(params.get("follow"))
            while True:
                items = self.recent(after)
                for seq, rec in items:
                    yield {"seq": seq, "record": rec}
                    after = seq
                if not follow:
                    return
                if not items:
                    with self._recent_lock:
                        self._recent_lock.wait(poll)
                    yield None  # lets the server notice a client that left

        # flows-flush writes the interval early: no policy changes, so it is read-only here.
        registry.register("flows-flush", flush_now)
        registry.register("flows", stream, on_loop=False, stream=True)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None
