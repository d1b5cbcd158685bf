"""calico-felix: the policy agent's entry point and loop (composition root).

::

    datastore.Syncer or TyphaSyncer (thread) ──list[Update] / SyncStatus──> queue.Queue(10)
        main thread: drain queue -> calc.CalcGraph.on_updates (sync, pure)
                     -> graph.flush() (EventSequencer: coalesced, ordered dpapi messages)
                     -> ConfigUpdate: merge config (env > node.<name> > default), live params
                     -> dataplane.InternalDataplane.on_update(msg) (managers: convert only)
                     -> dataplane.apply() (nft transaction, routes; nothing before InSync)
                     -> health beat, metrics

While apply() runs, updates wait in the queue and then coalesce in one flush. Crash-only: an
unexpected exception or a dataplane that keeps failing ends the process non-zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time

from calico.agent import answers, calc_check, control, flowlogs, metrics, status, typha
from calico.agent import config as agent_config
from calico.calc import graph as calc_graph
from calico.dataplane import (
    counters,
    encap_manager,
    libnft,
    links,
    loop,
    neighbors,
    nft_table,
    route_table,
    static_chains,
)
from calico.datastore import config as ds_config
from calico.datastore import syncer as ds_syncer
from calico.datastore.backend import Backend
from calico.dpapi import messages as m
from calico.lib import control as control_wire
from calico.lib import health

logger = logging.getLogger("calico.agent")


def dataplane_config(cfg: agent_config.Config) -> loop.DataplaneConfig:
    return loop.DataplaneConfig(
        static=static_chains.StaticConfig(
            default_endpoint_to_host_action=cfg["DefaultEndpointToHostAction"],
            failsafe_inbound=cfg["FailsafeInboundHostPorts"],
            failsafe_outbound=cfg["FailsafeOutboundHostPorts"],
        ),
        log_prefix=cfg["LogPrefix"],
        refresh_interval=min(cfg["NftablesRefreshInterval"], cfg["RouteRefreshInterval"]) or 90.0,
        encap=encap_manager.EncapConfig(
            vxlan_mtu=cfg["VXLANMTU"],
            ipip_mtu=cfg["IpInIpMtu"],
            vxlan_vni=cfg["VXLANVNI"],
            vxlan_port=cfg["VXLANPort"],
        ),
        nat_outgoing_address=cfg["NATOutgoingAddress"],
        flow_logs=flowlogs.dataplane_config(cfg),
    )


def set_log_level(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(logging.CRITICAL + 10 if level == "NONE" else getattr(logging, level))


CalcDiverged = calc_check.CalcDiverged


class Wake:
    """Queued by a control call to end the loop's wait (the call runs after the next apply)."""


WAKE = Wake()
QueueItem = list[ds_syncer.Update] | ds_syncer.SyncStatus | Wake


class Agent:
    def __init__(
        self, cfg: agent_config.Config, env: dict[str, str], backend: Backend | None
    ) -> None:
        self.env = env
        self.cfg = cfg
        self.hostname: str = cfg["FelixHostname"]
        self.backend = backend
        self.graph = calc_graph.CalcGraph(self.hostname)
        self.metrics = metrics.Metrics()
        self.health = health.Health()
        self.dataplane = loop.InternalDataplane(
            nft_table.NftTable(libnft.default_runner(), read_counters=counters.kernel_rules),
            route_table.RouteTable(),
            dataplane_config(cfg),
            hostname=self.hostname,
            links_=links.Links(),
            neighbors_=neighbors.Neighbors(),
            on_apply=self.metrics.apply_time.observe,
            on_failure=self.metrics.failures.inc,
        )
        self.checker = calc_check.CalcChecker(cfg["CalcCheckInterval"])
        self.flowlogs = flowlogs.FlowLogs(self.hostname, env, cfg)
        self.status_file = status.StatusFile(status.path_from_env(env))
        self._problems: list[str] = []
        self.queue: queue.Queue[QueueItem] = queue.Queue(10)
        self.stopping = threading.Event()
        self.syncer: typha.Feed
        if typha.wanted(cfg):  # the same updates and statuses, through Typha
            self.syncer = typha.feed(
                cfg,
                env,
                prefixes=calc_graph.watched_prefixes(),
                on_updates=self.queue.put,
                on_status=self.queue.put,
            )
        else:
            assert backend is not None, "without Typha the agent needs the datastore"
            self.syncer = ds_syncer.Syncer(
                backend,
                calc_graph.watched_prefixes(),
                on_updates=self.queue.put,
                on_status=self.queue.put,
            )

        self.control = control.Registry()
        self.loop_calls = control.LoopCalls(wake=self._wake)
        self.control_server = control.ControlServer(
            self.control,
            self.loop_calls,
            path=control_wire.socket_path(env),
            tcp=(cfg["ControlHost"], cfg["ControlPort"]) if cfg["ControlPort"] else None,
        )
        self.answers = answers.Answers(
            hostname=self.hostname, dataplane=self.dataplane, graph=self.graph,
            calls=self.loop_calls,
        )  # fmt: skip
        self.answers.register(self.control)
        self.flowlogs.register(
            self.control, lambda: self.flowlogs.flush(self.dataplane, self.graph)
        )
        self.metrics.add_rule_counters(self.answers.rule_samples)

    def _wake(self) -> None:
        try:
            self.queue.put_nowait(WAKE)
        except queue.Full:
            pass  # the loop has input waiting: it is about to turn anyway

    def start_servers(self) -> None:
        try:
            self.control_server.start()
        except OSError as exc:  # diagnostics only: enforcement goes on without it
            logger.error("control socket %s: %s", self.control_server.path, exc)
        if self.cfg["HealthEnabled"]:
            health.serve(
                self.cfg["HealthHost"],
                self.cfg["HealthPort"],
                health=self.health,
                registry=None,
                thread="health",
            )
        if self.cfg["PrometheusMetricsEnabled"]:
            self.metrics.serve(self.cfg["PrometheusMetricsHost"], self.cfg["PrometheusMetricsPort"])

    def on_config(self, msg: m.ConfigUpdate) -> None:
        new = agent_config.load(
            self.env, global_config=dict(msg.global_config), node_config=dict(msg.node_config)
        )
        for p in agent_config.PARAMS + agent_config.ENV_ONLY_PARAMS:
            if not p.live and new[p.name] != self.cfg[p.name]:
                logger.warning(
                    "config %s changed to %r: takes effect at restart", p.name, new[p.name]
                )
                new.values[p.name] = self.cfg[p.name]
        if new != self.cfg:
            logger.info("configuration now %s", new.values)
        self.cfg = new
        set_log_level(new["LogSeverityScreen"])
        self.dataplane.set_config(dataplane_config(new))
        self.flowlogs.configure(new)

    def _handle(self, item: QueueItem) -> None:
        if isinstance(item, Wake):
            return
        if isinstance(item, ds_syncer.SyncStatus):
            logger.info("datastore status: %s", item.value)
            if item is ds_syncer.SyncStatus.IN_SYNC:
                self.graph.on_in_sync()
            return
        start = time.perf_counter()
        self.graph.on_updates(item)
        secs = time.perf_counter() - start
        self.metrics.calc_time.observe(secs)
        logger.debug("calc graph: %d updates in %.2f ms", len(item), secs * 1000)
        self.metrics.updates.inc(len(item))

    def step(self, timeout: float) -> None:
        """One loop turn: wait for input (up to timeout), process all queued, flush, apply."""
        try:
            self._handle(self.queue.get(timeout=max(timeout, 0.0)))
            while True:
                self._handle(self.queue.get_nowait())
        except queue.Empty:
            pass
        for msg in self.graph.flush():
            if isinstance(msg, m.ConfigUpdate):
                self.on_config(msg)
            self.dataplane.on_update(msg)
        self.dataplane.apply()
        self.flowlogs.turn(self.dataplane, self.graph)
        self.loop_calls.run_pending()  # control calls see the state just programmed
        self._check_calc()  # after apply: starting a check (a fork) never delays this change
        self._update_status()
        self._report_status()

    def _check_calc(self) -> None:
        """Compare the incremental output with a full recompute, now and then, in a child
        process (calc_check); a divergence raises here. Crash-only: a restart recomputes all."""
        interval = self.cfg["CalcCheckInterval"]
        self.checker.turn(self.graph, interval=interval, in_sync=self.dataplane.in_sync)

    def _update_status(self) -> None:
        stats = self.graph.stats()
        self.metrics.local_endpoints.set(stats.local_endpoints)
        self.metrics.local_policies.set(stats.active_policies)
        self.metrics.local_profiles.set(stats.active_profiles)
        self.metrics.ipsets.set(stats.active_ipsets)
        self.health.ready = (
            self.dataplane.in_sync and self.dataplane.applies > 0 and (self.dataplane.failures == 0)
        )
        self.health.detail = {"in_sync": self.dataplane.in_sync, "applies": self.dataplane.applies}
        self.health.beat()

    def _report_status(self) -> None:
        """Problems (log, readiness, felix-status.json): what this node cannot program."""
        problems = self.dataplane.problems() if self.dataplane.in_sync else []
        for text in sorted(set(problems) - set(self._problems)):
            logger.error("problem: %s", text)
        for text in sorted(set(self._problems) - set(problems)):
            logger.info("problem solved: %s", text)
        self._problems = problems
        self.health.ready = self.health.ready and not problems
        self.health.detail["problems"] = problems
        self.status_file.write(
            {
                "node": self.hostname,
                "pid": os.getpid(),
                "ready": self.health.ready,
                "in_sync": self.dataplane.in_sync,
                "applies": self.dataplane.applies,
                "failures": self.dataplane.failures,
                "problems": problems,
                "flow_logs": self.flowlogs.status(),
            }
        )

    def run(self) -> int:
        logger.info("calico-felix starting on node %s", self.hostname)
        self.start_servers()
        self.syncer.start()
        try:
            while not self.stopping.is_set():
                deadline = min(self.dataplane.next_deadline(), self.flowlogs.next_deadline())
                wait = min(deadline - time.monotonic(), 1.0)
                if self.dataplane.dirty and self.dataplane.in_sync:
                    wait = 0.0
                self.step(wait)
        except loop.DataplaneFailed as exc:
            logger.critical("dataplane keeps failing, exiting: %s", exc)
            return 1
        except CalcDiverged as exc:
            logger.critical("incremental state differs from a full recompute, exiting: %s", exc)
            return 1
        finally:
            self.syncer.stop()
            self.checker.close()
            self.control_server.close()
            self.flowlogs.close()
            self.flowlogs.flush(self.dataplane, self.graph)  # the last interval is not lost
        logger.info("calico-felix stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-felix", description="Calico policy agent")
    parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("FELIX_FELIXHOSTNAME", env.get("NODENAME", ""))
    if not env["FELIX_FELIXHOSTNAME"]:
        del env["FELIX_FELIXHOSTNAME"]
    logging.basicConfig(
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        cfg = agent_config.load(env)
        typha.check(cfg)
        backend = None if typha.wanted(cfg) else ds_config.load(env=env).backend()
    except (agent_config.ConfigError, ds_config.ConfigError, ValueError) as exc:
        print(f"calico-felix: configuration error: {exc}", file=sys.stderr)
        return 2
    set_log_level(cfg["LogSeverityScreen"])
    agent = Agent(cfg, env, backend)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stopping.set())
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
