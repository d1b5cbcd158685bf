"""The NFLOG reader thread and the per-interval aggregation of logged packets into flows.

::

    kernel: log twins at verdict points ──NFLOG group N (rate-limited by the nft limit)──┐
    FlowCollector thread: NflogSocket.recv (batches) -> nflog.parse -> Aggregator.add    │
        (prefix -> action, direction, staged?, id; key: reporter direction, verdict id,   │
         5-tuple; at most ``max_flows`` keys per interval, the rest only counted)         │
    agent loop, every FlowLogsFlushInterval: Aggregator.drain() -> flow_records (names) ─┘

The thread only parses and counts (a dict update per packet); everything that needs the
calculation graph or the dataplane's plans happens on the agent's loop, at flush. Memory is
bounded by ``max_flows`` whatever the kernel sends, and what it sends is bounded by its limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from calico.dataplane import nflog
from calico.dpapi import flows

logger = logging.getLogger(__name__)

# (direction, proto, src, sport, dst, dport)
FiveTuple = tuple[str, int, str, int, str, int]


@dataclass(slots=True)
class FlowAcc:
    """One flow's logged packets at one real verdict point in an interval."""

    first: float
    last: float
    action: str  # the prefix's (so a record has it even when its point is unknown)
    packets: int = 0
    bytes: int = 0
    mark: int = 0  # of the last packet: carries the staged walk's verdict bits
    ifindex: int = 0  # the reporting endpoint's interface (ingress: out, egress: in)


@dataclass(slots=True)
class Batch:
    """What one interval logged: real verdicts per (5-tuple, point id), staged points per
    5-tuple, and how many packets were not recorded."""

    flows: dict[tuple[FiveTuple, str], FlowAcc] = field(default_factory=dict)
    staged: dict[FiveTuple, str] = field(default_factory=dict)  # 5-tuple -> staged point id
    packets: int = 0
    overflow: int = 0  # packets of flows beyond max_flows
    foreign: int = 0  # messages with a prefix that is not ours


class Aggregator:
    def __init__(self, max_flows: int, clock: Callable[[], float] = time.time) -> None:
        self.max_flows = max_flows
        self._clock = clock
        self._lock = threading.Lock()
        self._batch = Batch()

    def add(self, pkts: list[nflog.LogPacket]) -> None:
        now = self._clock()
        with self._lock:
            batch = self._batch
            for pkt in pkts:
                self._add(batch, pkt, now)

    def _add(self, batch: Batch, pkt: nflog.LogPacket, now: float) -> None:
        prefix = flows.parse_prefix(pkt.prefix)
        if prefix is None:
            batch.foreign += 1
            return
        batch.packets += 1
        key: FiveTuple = (prefix.direction, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if prefix.staged:
            if key in batch.staged or len(batch.staged) < self.max_flows:
                batch.staged[key] = prefix.ident
            return
        fkey = (key, prefix.ident)
        acc = batch.flows.get(fkey)
        if acc is None:
            if len(batch.flows) >= self.max_flows:
                batch.overflow += 1
                return
            stamp = pkt.timestamp or now
            acc = batch.flows[fkey] = FlowAcc(stamp, stamp, prefix.action)
        stamp = pkt.timestamp or now
        acc.first, acc.last = min(acc.first, stamp), max(acc.last, stamp)
        acc.packets += 1
        acc.bytes += pkt.length
        acc.mark = pkt.mark
        acc.ifindex = pkt.outdev if prefix.direction == flows.INGRESS else pkt.indev

    def drain(self) -> Batch:
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch


class FlowCollector:
    """Reads NFLOG ``group`` on a thread into ``aggregator``. ``error`` says why it cannot (the
    agent reports it as a problem; policy keeps working without flow logs)."""

    def __init__(self, group: int, aggregator: Aggregator) -> None:
        self.group = group
        self.aggregator = aggregator
        self.error: str | None = None
        self.received = 0
        self._sock: nflog.NflogSocket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._sock = nflog.NflogSocket(self.group)
        except OSError as exc:
            self.error = f"flow logs: cannot read NFLOG group {self.group}: {exc}"
            logger.error("%s", self.error)
            return
        self._thread = threading.Thread(target=self._run, name="flow-collector", daemon=True)
        self._thread.start()

    @property
    def overruns(self) -> int:
        return self._sock.overruns if self._sock else 0

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                pkts = self._sock.recv(0.5)
            except OSError as exc:  # the socket broke: say so, stop reading (crash-only loop)
                self.error = f"flow logs: NFLOG read failed: {exc}"
                logger.error("%s", self.error)
                return
            if pkts:
                self.received += len(pkts)
                self.aggregator.add(pkts)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
