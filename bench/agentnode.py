"""A node for the agent benchmarks: a network namespace with its own etcd, workloads behind veths,
and ``calico-felix`` started the way a user starts it.

The agent's environment is built from nothing: ``PATH``, ``ETCD_ENDPOINTS``, ``NODENAME``,
``CALICO_LOG_DIR`` (what running it needs, as calico-node gives it) and whatever the bench passes
explicitly, so no ``FELIX_*`` variable from the caller's shell or a test harness changes what is
measured; a bench that passes one must say so (``Recorder.setting``). Everything lives in
namespaces named ``calbench-<hex>-N`` that this module creates and deletes by name.

::

    node netns  (etcd on 127.0.0.1, calico-felix, health on localhost:9099; eth0: a veth uplink
        │        with the default route)
        caliXXXX ──veth── eth0 10.65.0.N/32   workload netns (one per workload)
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient, op_put
from calico.datastore.etcd_server import EtcdServer
from calico.lib import cmd, netns
from calico.model import kinds

PREFIX = "calbench-"
NODENAME = "node1"
FELIX = Path(sys.executable).with_name("calico-felix")
TXN_OPS = 128  # etcd's default --max-txn-ops


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    proc = cmd.run(argv, input=input, check=False, timeout=None)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def ours(ns: str) -> str:
    if not ns.startswith(PREFIX):
        raise AssertionError(f"refusing to act in network namespace {ns!r}: not one of ours")
    return ns


def ip_batch(ns: str, cmds: list[str]) -> None:
    sh("ip", "-n", ours(ns), "-batch", "-", input="\n".join(cmds) + "\n")


class Namespaces:
    """The namespaces one bench run made (``calbench-<hex>-N``), deleted by name."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.made: list[str] = []

    def make(self) -> str:
        name = f"{PREFIX}{self.tag}-{len(self.made)}"
        netns.add(name)
        self.made.append(name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.made):
            netns.delete(name)
        self.made.clear()


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return kinds.KINDS[obj["kind"]].key(meta["name"], meta.get("namespace"))


def agent_env(endpoint: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's whole environment: what it needs to run, plus ``extra`` (non-defaults)."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "ETCD_ENDPOINTS": endpoint,
        "NODENAME": NODENAME,
    }
    return {**env, **(extra or {})}


@dataclass
class Workload:
    name: str
    ns: str
    iface: str
    ip: str
    labels: dict[str, str]

    def wep(self) -> dict[str, Any]:
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": f"{NODENAME}-k8s-{self.name}-eth0",
                "namespace": "default",
                "labels": {
                    **self.labels,
                    "projectcalico.org/namespace": "default",
                    "projectcalico.org/orchestrator": "k8s",
                },
            },
            "spec": {
                "node": NODENAME,
                "orchestrator": "k8s",
                "pod": self.name,
                "endpoint": "eth0",
                "interfaceName": self.iface,
                "ipNetworks": [f"{self.ip}/32"],
                "profiles": ["kns.default"],
            },
        }


ALLOW_ALL_PROFILE = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "Profile",
    "metadata": {"name": "kns.default"},
    "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
}


class Node:
    """The node namespace with etcd and (when started) the agent."""

    def __init__(self, nss: Namespaces, tmp: Path, *, etcd_port: int = 2379) -> None:
        self.nss = nss
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.ns = nss.make()
        netns.sysctl(self.ns, {"net.ipv4.ip_forward": "1"})
        # An uplink with the default route, as a real node has: proxy ARP on the cali* side
        # answers for the workloads' gateway (169.254.1.1) only when the node has a route to it.
        uplink = ["link add eth0 type veth peer name eth0peer", "link set eth0 up",
                  "link set eth0peer up", "addr add 10.99.0.11/24 dev eth0"]  # fmt: skip
        ip_batch(self.ns, [*uplink, "route add default dev eth0"])
        self.etcd = EtcdServer(
            tmp / "etcd", host="127.0.0.1", port=etcd_port, peer_port=etcd_port + 1, netns=self.ns
        )
        self.thread = netns.NetnsExecutor(self.ns)
        self.thread.call(self.etcd.start)
        self.client: Client = self.thread.call(lambda: Client(EtcdClient([self.etcd.endpoint])))
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_log = tmp / "felix.log"
        self.workloads: dict[str, Workload] = {}
        self.apply(ALLOW_ALL_PROFILE)

    # ---- datastore ----------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.thread.call(self.client.apply, obj, validate=False)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.thread.call(self.client.delete, kind, name, namespace)
        except NotFound:
            pass

    def bulk_put(self, objs: list[dict[str, Any]]) -> None:
        """Raw puts, ``TXN_OPS`` to a transaction (fast set-up of big worlds)."""
        etcd = self.client.backend

        def put_all() -> None:
            for i in range(0, len(objs), TXN_OPS):
                etcd.txn([], [op_put(key(o), json.dumps(o)) for o in objs[i : i + TXN_OPS]])

        self.thread.call(put_all)

    # ---- interfaces and workloads -------------------------------------------------------------

    def add_dummy_ifaces(self, names: list[str]) -> None:
        """Host-side veths with nothing behind them (endpoints that only need an interface)."""
        for i in range(0, len(names), 500):
            ip_batch(
                self.ns,
                [
                    c
                    for j, name in enumerate(names[i : i + 500], i)
                    for c in (
                        f"link add {name} type veth peer name bpeer{j}",
                        f"link set {name} up",
                    )
                ],
            )

    def add_workload(self, name: str, ip: str, labels: dict[str, str]) -> Workload:
        ns = self.nss.make()
        iface = "cali" + hashlib.sha1(f"default.{name}".encode()).hexdigest()[:11]
        sh("ip", "-n", self.ns, "link", "add", iface, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        ip_batch(
            ns,
            [
                f"addr add {ip}/32 dev eth0",
                "link set eth0 up",
                "route add 169.254.1.1 dev eth0 scope link",
                "route add default via 169.254.1.1 dev eth0",
            ],
        )
        ip_batch(self.ns, [f"link set {iface} address ee:ee:ee:ee:ee:ee", f"link set {iface} up"])
        netns.sysctl(
            self.ns,
            {
                f"net.ipv4.conf.{iface}.proxy_arp": "1",
                f"net.ipv4.neigh.{iface}.proxy_delay": "0",
                f"net.ipv4.conf.{iface}.forwarding": "1",
            },
        )
        wl = Workload(name, ns, iface, ip, labels)
        self.workloads[name] = wl
        self.apply(wl.wep())
        return wl

    # ---- the agent ----------------------------------------------------------------------------

    def start_agent(self, extra_env: dict[str, str] | None = None, *, argv: list[str] | None = None
                    ) -> None:  # fmt: skip
        """``calico-felix`` (or ``argv``) in the node namespace with :func:`agent_env`."""
        # Where the node keeps its logs (calico-node sets it): flow logs go to <it>/flowlogs.
        env = {"CALICO_LOG_DIR": str(self.tmp / "log"), **agent_env(self.etcd.endpoint, extra_env)}
        with self.agent_log.open("ab") as log:
            self.agent = cmd.start(
                ["ip", "netns", "exec", self.ns, *(argv or [str(FELIX)])],
                env=env,
                stdout=log,
                stderr=log,
            )

    def health(self, path: str) -> int:
        def fetch() -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:9099{path}", timeout=2) as r:
                    return int(r.status)
            except OSError as exc:
                return int(getattr(exc, "code", 0) or 0)

        return self.thread.call(fetch)

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds until /readiness answers 200 (in sync and programmed)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.health("/readiness") == 200:
                return time.monotonic() - start
            if self.agent is not None and self.agent.poll() is not None:
                raise RuntimeError("agent exited:\n" + self.log_tail())
            time.sleep(0.05)
        raise TimeoutError("agent not ready:\n" + self.log_tail())

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
            self.agent = None

    def log(self) -> str:
        return self.agent_log.read_text(errors="replace") if self.agent_log.exists() else ""

    def log_tail(self) -> str:
        return self.log()[-4000:]

    def close(self) -> None:
        self.stop_agent()
        self.thread.call(self.etcd.stop)
        self.thread.close()
