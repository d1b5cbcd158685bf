"""Test harness for the agent: a node namespace running calico-felix, workloads behind cali veths,
an "external" host on the node's eth0, real etcd (inside the node namespace), probes, and a
connectivity matrix that retries until it matches and prints expected vs actual.

::

    ext netns  eth0 10.99.0.1 ──veth── eth0 10.99.0.11  node netns (etcd, calico-felix, probe agent)
                                           caliXXXX ──veth── eth0 10.65.0.N/32  workload netns
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.lib import netns

T = TypeVar("T")
PROBE_AGENT = Path(__file__).with_name("probe_agent.py")
FELIX = Path(sys.executable).with_name("calico-felix")
NODE_IP = "10.99.0.11"
EXT_IP = "10.99.0.1"
NODENAME = "node1"
# Namespaces this harness may act in: the make_netns fixture's and the policy benchmark's.
OUR_PREFIXES = ("calt-", "calbench-")


def ours(ns: str) -> str:
    """``ns`` when it is one of our namespaces; anything else (an empty name above all, which
    would run the command in the root namespace) is refused before a command is built."""
    if not ns.startswith(OUR_PREFIXES):
        raise AssertionError(f"refusing to act in network namespace {ns!r}: not one of ours")
    return ns


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def ip_batch(ns: str, cmds: list[str]) -> None:
    sh("ip", "-n", ours(ns), "-batch", "-", input="\n".join(cmds) + "\n")


def sysctl(ns: str, *settings: str) -> None:
    sh("ip", "netns", "exec", ours(ns), "sysctl", "-q", "-w", *settings)


# A one-thread executor whose thread (and its sockets) live in a network namespace.
NetnsThread = netns.NetnsExecutor


class Prober:
    """A probe_agent process in a namespace: serves ports, runs probes on request."""

    def __init__(self, ns: str, tcp: str = "80,8080,22", udp: str = "53,5353") -> None:
        self.ns = ours(ns)
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                str(PROBE_AGENT),
                "--tcp",
                tcp,
                "--udp",
                udp,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, line: str) -> bool:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer not in ("ok", "fail"):  # a dead prober is not a blocked probe
            raise AssertionError(f"prober in {self.ns} gave no answer to {line!r}: {answer!r}")
        return answer == "ok"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class Workload:
    name: str
    ns: str
    iface: str
    ip: str
    labels: dict[str, str]
    namespace: str = "default"
    ports: list[dict[str, Any]] = field(default_factory=list)
    prober: Prober | None = None
    ip6: str | None = None
    service_account: str | None = None  # set: labelled and given its ksa.<ns>.<sa> profile

    def wep(self) -> dict[str, Any]:
        name = f"{NODENAME}-k8s-{self.name.replace('-', '--')}-eth0"
        account = (
            {"projectcalico.org/serviceaccount": self.service_account}
            if self.service_account
            else {}
        )
        profiles = [f"kns.{self.namespace}"]
        if self.service_account:
            profiles.append(f"ksa.{self.namespace}.{self.service_account}")
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    **self.labels,
                    "projectcalico.org/namespace": self.namespace,
                    "projectcalico.org/orchestrator": "k8s",
                    **account,
                },
            },
            "spec": {
                "node": NODENAME,
                "orchestrator": "k8s",
                "pod": self.name,
                "endpoint": "eth0",
                "interfaceName": self.iface,
                "ipNetworks": [f"{self.ip}/32"] + ([f"{self.ip6}/128"] if self.ip6 else []),
                "profiles": profiles,
                "ports": self.ports,
            },
        }


class Node:
    """The node namespace with etcd and the agent, plus its external peer."""

    def __init__(self, make_netns: Callable[[], str], tmp: Path, etcd_port: int) -> None:
        self._make_netns = make_netns
        self.tmp = tmp
        self.ns = ours(make_netns())
        self.ext = ours(make_netns())
        sh(
            "ip",
            "-n",
            self.ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.ext,
        )
        ip_batch(
            self.ns,
            [
                f"addr add {NODE_IP}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {EXT_IP} dev eth0",
            ],
        )
        ip_batch(
            self.ext,
            [
                f"addr add {EXT_IP}/24 dev eth0",
                "link set eth0 up",
                f"route add 10.65.0.0/16 via {NODE_IP} dev eth0",
            ],
        )
        sysctl(
            self.ns,
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.accept_dad=0",
        )
        self.etcd = EtcdServer(
            tmp / "etcd", host="127.0.0.1", port=etcd_port, peer_port=etcd_port + 1, netns=self.ns
        )
        self.thread = NetnsThread(self.ns)
        self.thread.call(self.etcd.start)
        self.client: Client = self.thread.call(lambda: Client(EtcdClient([self.etcd.endpoint])))
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_log = tmp / "felix.log"
        self.workloads: dict[str, Workload] = {}
        self.host_prober = Prober(self.ns)
        self.ext_prober = Prober(self.ext)
        self.apply(profile("default"))

    # ---- datastore ----------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.thread.call(self.client.apply, obj, validate=False)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.thread.call(self.client.delete, kind, name, namespace)
        except NotFound:
            pass

    # ---- agent --------------------------------------------------------------------------------

    def start_agent(self, **env: str | None) -> None:
        full: dict[str, str | None] = {
            **os.environ,
            "ETCD_ENDPOINTS": self.etcd.endpoint,
            "NODENAME": NODENAME,
            "CALICO_RUN_DIR": str(self.tmp / "run"),  # felix-status.json goes here
            "CALICO_LOG_DIR": str(self.tmp / "log"),  # flow logs go to <it>/flowlogs
            "FELIX_LOGSEVERITYSCREEN": os.environ.get("TEST_FELIX_LOG", "INFO"),
            "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT",
            "FELIX_PROMETHEUSMETRICSENABLED": "true",
            "FELIX_CALCCHECKINTERVAL": "0.5",  # incremental == full recompute, checked live
            **env,
        }
        log = self.agent_log.open("ab")
        env_ = {k: v for k, v in full.items() if v is not None}
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", ours(self.ns), str(FELIX)], env=env_, stdout=log, stderr=log
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the agent's /readiness says it is in sync and has programmed the dataplane."""
        import urllib.request

        def ready() -> bool:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9099/readiness", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        deadline = time.monotonic() + timeout
        while not self.thread.call(ready):
            if time.monotonic() > deadline:
                raise AssertionError("agent not ready:\n" + self.log_tail())
            time.sleep(0.05)

    def kill_agent(self) -> None:
        if self.agent is not None:
            self.agent.kill()
            self.agent.wait()
            self.agent = None

    def nft(self, *args: str, check: bool = False) -> str:
        return sh("ip", "netns", "exec", ours(self.ns), "nft", *args, check=check)

    def flows(self) -> list[dict[str, Any]]:
        """The flow records the agent wrote so far."""
        from calico.lib import jsonlines

        return list(jsonlines.read(self.tmp / "log" / "flowlogs" / "flows.log"))

    def wait_flows(
        self, want: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            recs = self.flows()
            if want(recs):
                return recs
            if time.monotonic() > deadline:
                raise AssertionError(f"flow records never matched; got {recs}\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        return self.agent_log.read_text(errors="replace")[-4000:] if self.agent_log.exists() else ""

    # ---- workloads ----------------------------------------------------------------------------

    def add_workload(
        self,
        name: str,
        ip: str,
        labels: dict[str, str],
        *,
        namespace: str = "default",
        ports: list[dict[str, Any]] | None = None,
        write: bool = True,
        ip6: str | None = None,
        service_account: str | None = None,
    ) -> Workload:
        ns = ours(self._make_netns())
        sysctl(ns, "net.ipv6.conf.default.accept_dad=0")
        iface = "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]
        sh(
            "ip",
            "-n",
            self.ns,
            "link",
            "add",
            iface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
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
        sysctl(
            self.ns,
            f"net.ipv4.conf.{iface}.proxy_arp=1",
            f"net.ipv4.neigh.{iface}.proxy_delay=0",
            f"net.ipv4.conf.{iface}.forwarding=1",
        )
        if ip6:  # the host side's link-local (from ee:ee:ee:ee:ee:ee) is the v6 gateway
            ip_batch(
                ns,
                [
                    f"addr add {ip6}/128 dev eth0 nodad",
                    "route add default via fe80::ecee:eeff:feee:eeee dev eth0",
                ],
            )
        wl = Workload(
            name,
            ns,
            iface,
            ip,
            labels,
            namespace,
            ports or [],
            ip6=ip6,
            service_account=service_account,
        )
        wl.prober = Prober(ns)
        self.workloads[name] = wl
        if write:
            self.apply(wl.wep())
        return wl

    def close(self) -> None:
        self.kill_agent()
        for p in [self.host_prober, self.ext_prober] + [w.prober for w in self.workloads.values()]:
            if p is not None:
                p.close()
        self.thread.call(self.etcd.stop)
        self.thread.close()


def profile(namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"kns.{namespace}"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {f"pcns.{k}": v for k, v in (labels or {}).items()},
        },
    }


# ---- connectivity matrix ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    src: str  # workload name, "host" or "ext"
    dst_ip: str
    proto: str  # tcp | udp | icmp
    port: int = 0

    def line(self) -> str:
        return f"{self.proto} {self.dst_ip}" + (f" {self.port}" if self.proto != "icmp" else "")


class Matrix:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.expected: dict[Probe, bool] = {}

    def _prober(self, src: str) -> Prober:
        if src == "host":
            return self.node.host_prober
        if src == "ext":
            return self.node.ext_prober
        prober = self.node.workloads[src].prober
        assert prober is not None
        return prober

    def ip(self, name: str, v6: bool = False) -> str:
        if v6:
            ip6 = self.node.workloads[name].ip6
            assert ip6 is not None
            return ip6
        return {"host": NODE_IP, "ext": EXT_IP}.get(name) or self.node.workloads[name].ip

    def expect(
        self, src: str, dst: str, proto: str = "tcp", port: int = 80, *, ok: bool, v6: bool = False
    ) -> None:
        self.expected[Probe(src, self.ip(dst, v6), proto, port if proto != "icmp" else 0)] = ok

    def run(self) -> dict[Probe, bool]:
        by_src: dict[str, list[Probe]] = {}
        for probe in self.expected:
            by_src.setdefault(probe.src, []).append(probe)

        def run_src(probes: list[Probe]) -> Iterator[tuple[Probe, bool]]:
            prober = self._prober(probes[0].src)
            return iter([(p, prober.ask(p.line())) for p in probes])

        with concurrent.futures.ThreadPoolExecutor(max(1, len(by_src))) as pool:
            results = pool.map(run_src, by_src.values())
            return {p: ok for chunk in results for p, ok in chunk}

    def check(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            actual = self.run()
            if actual == self.expected:
                return
            if time.monotonic() > deadline:
                rows = [
                    f"  {p.src:>8} -> {p.dst_ip:<12} {p.proto}/{p.port:<5} expected "
                    f"{'ok' if self.expected[p] else 'blocked':<8} got "
                    f"{'ok' if actual[p] else 'blocked'}"
                    f"{'' if actual[p] == self.expected[p] else '   <-- MISMATCH'}"
                    for p in self.expected
                ]
                raise AssertionError(
                    "connectivity mismatch:\n"
                    + "\n".join(rows)
                    + "\n--- agent log tail ---\n"
                    + self.node.log_tail()
                )
            time.sleep(0.3)
