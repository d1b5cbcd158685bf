"""InternalDataplane: dpapi messages in, kernel state out (the dataplane half of the agent loop).

``on_update(msg)`` only records (managers convert into the drivers' desired state). ``apply()``
does the I/O, and does nothing before the first ``InSync``: until then whatever table an earlier
agent left keeps enforcing (restart without a gap). Apply order: IP set deferred work -> nft
transaction (sets, chains, maps, deletions: atomic) -> routes. A failed nft apply is retried as a
full table replace; ``MAX_FAILURES`` consecutive failures raise ``DataplaneFailed`` (the agent
exits non-zero: crash-only, never limp on with a half-programmed table).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from calico.dataplane import (
    encap_manager,
    endpoint_manager,
    flowlog_render,
    hostip_manager,
    ipset_manager,
    libnft,
    links,
    masq_manager,
    neighbors,
    nft_table,
    policy_manager,
    route_table,
    static_chains,
)
from calico.dpapi import messages as m
from calico.lib import cmd

logger = logging.getLogger(__name__)

MAX_FAILURES = 5
ROUTE_RETRY = 1.0


class DataplaneFailed(RuntimeError):
    """The kernel kept refusing our state."""


@dataclass(frozen=True, slots=True)
class DataplaneConfig:
    static: static_chains.StaticConfig = field(default_factory=static_chains.StaticConfig)
    log_prefix: str = "calico-packet"
    refresh_interval: float = 90.0
    encap: encap_manager.EncapConfig = field(default_factory=encap_manager.EncapConfig)
    nat_outgoing_address: str = ""
    flow_logs: flowlog_render.FlowLogConfig = flowlog_render.OFF


class InternalDataplane:
    def __init__(
        self,
        table: nft_table.NftTable,
        routes: route_table.RouteTable,
        config: DataplaneConfig,
        *,
        hostname: str,
        links_: links.Links,
        neighbors_: neighbors.Neighbors,
        clock: Callable[[], float] = time.monotonic,
        on_apply: Callable[[float], None] = lambda secs: None,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.table = table
        self.routes = routes
        self.links = links_
        self.neighbors = neighbors_
        self._clock = clock
        self._on_apply = on_apply
        self._on_failure = on_failure
        for name in static_chains.MAPS:
            table.declare_map(name, static_chains.MAP_DECL)
        self.ipsets = ipset_manager.IPSetManager(table)
        self.policies = policy_manager.PolicyManager(table)
        self.endpoints = endpoint_manager.EndpointManager(table, routes, self.policies)
        self.points = self.policies.points  # flow-log prefix ids -> verdict points
        self.hostips = hostip_manager.HostIPManager(table)
        self.masq = masq_manager.MasqManager(table)
        self.encap = encap_manager.EncapManager(table, hostname)
        self.config = config
        self.set_config(config)
        self.in_sync = False
        self.failures = 0
        self.applies = 0
        self._next_refresh = clock() + config.refresh_interval
        self._retry_at: float | None = None
        self._route_retry_at = 0.0

    def set_config(self, config: DataplaneConfig) -> None:
        self.config = config
        self.policies.log_prefix = config.log_prefix
        self.masq.set_nat_address(config.nat_outgoing_address)
        if config.flow_logs.enabled:
            self.table.set_limit(flowlog_render.LIMIT, config.flow_logs.limit_decl())
        self.endpoints.set_flow_logs(config.flow_logs)
        if not config.flow_logs.enabled:
            self.table.delete_limit(flowlog_render.LIMIT)
        self.encap.set_config(config.encap)
        for name, chain in static_chains.chains(config.static).items():
            if chain.base:
                self.table.set_base_chain(name, chain.base, chain.rules)
            else:
                self.table.set_chain(name, chain.rules)

    def on_update(self, msg: m.Message) -> None:
        match msg:
            case m.InSync():
                if not self.in_sync:
                    logger.info("datastore in sync: programming the dataplane")
                self.in_sync = True
            case m.IPSetUpdate() | m.IPSetDeltaUpdate() | m.IPSetRemove():
                self.ipsets.on_update(msg)
            case (
                m.ActivePolicyUpdate()
                | m.ActivePolicyRemove()
                | m.ActiveProfileUpdate()
                | m.ActiveProfileRemove()
            ):
                self.policies.on_update(msg)
            case (
                m.WorkloadEndpointUpdate()
                | m.WorkloadEndpointRemove()
                | m.HostEndpointUpdate()
                | m.HostEndpointRemove()
            ):
                self.endpoints.on_update(msg)
            case m.IPAMPoolUpdate() | m.IPAMPoolRemove():
                self.masq.on_update(msg)
                self.encap.on_update(msg)
            case m.HostMetadataUpdate() | m.HostMetadataRemove():
                self.hostips.on_update(msg)
                self.encap.on_update(msg)
            case (
                m.VXLANTunnelEndpointUpdate()
                | m.VXLANTunnelEndpointRemove()
                | m.RouteUpdate()
                | m.RouteRemove()
            ):
                self.encap.on_update(msg)

    @property
    def dirty(self) -> bool:
        return (
            self.ipsets.dirty
            or self.hostips.dirty
            or self.masq.dirty
            or self.encap.dirty
            or self.table.dirty
            or self.links.dirty
            or self.routes.dirty
            or self.neighbors.dirty
        )

    def complete_deferred_work(self) -> None:
        """The managers' conversions into the drivers' desired state (no I/O)."""
        self.ipsets.complete_deferred_work()
        self.hostips.complete_deferred_work()
        self.masq.complete_deferred_work()
        self.encap.complete_deferred_work(self.links, self.neighbors)

    def problems(self) -> list[str]:
        """What this node cannot program (e.g. a tunnel device its kernel lacks), in words."""
        return self.encap.problems(self.links.problems)

    def next_deadline(self) -> float:
        """When apply() next has timed work (refresh, retry)."""
        deadline = self._next_refresh
        if self._retry_at is not None:
            deadline = min(deadline, self._retry_at)
        if self.routes.pending_ifaces or self.neighbors.pending:
            deadline = min(deadline, self._route_retry_at)
        return deadline

    def apply(self) -> bool:
        """Program the kernel if in sync and something changed; True if an apply ran."""
        if not self.in_sync:
            return False
        now = self._clock()
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh_interval
            self.table.check_drift()
            self.routes.queue_resync()
            self.links.queue_resync()
            self.neighbors.queue_resync()
        if (self.routes.pending_ifaces or self.neighbors.pending) and now >= self._route_retry_at:
            self.routes.queue_resync()  # an interface we route to was missing: look again
            self.neighbors.queue_resync()
            self._route_retry_at = now + ROUTE_RETRY
        if self._retry_at is not None and now < self._retry_at:
            return False
        if not self.dirty:
            return False
        self.complete_deferred_work()
        start = time.perf_counter()
        try:
            self.table.apply()
            self.encap.after_links(self.links.apply(), self.routes, self.neighbors)
            self.routes.apply()
            self.neighbors.apply()
        except (libnft.NftError, cmd.CmdError) as exc:
            self.failures += 1
            self._on_failure()
            logger.error("dataplane apply failed (%d in a row): %s", self.failures, exc)
            logger.debug("failed nft script:\n%s", self.table.last_script)
            if self.failures >= MAX_FAILURES:
                raise DataplaneFailed(str(exc)) from exc
            self._retry_at = now + min(0.1 * 2**self.failures, 5.0)
            return False
        secs = time.perf_counter() - start
        self.failures = 0
        self._retry_at = None
        self.applies += 1
        full = self.table.last_script.startswith("add table")
        logger.log(
            logging.INFO if full else logging.DEBUG,
            "applied %s dataplane update in %.1f ms (nft %.1f ms, %d nft lines%s)",
            "full" if full else "delta",
            secs * 1000,
            self.table.last_run_secs * 1000,
            self.table.last_script.count("\n"),
            f"; carried over the counters of {self.table.carried} rules" if full else "",
        )
        self._on_apply(secs)
        return True
