"""A multi-subnet cluster for the agent's encapsulation tests: node namespaces on two subnets
joined by a router that has no route to any pod CIDR (as a cloud VPC), an ``outside`` host, one
real ``calico-felix`` per node, a real etcd, and pods on cali veths made as the CNI plugin does.

::

    outside 203.0.113.1/24 ── router: 203.0.113.254, br1 10.99.1.1/24, br2 10.99.2.1/24
                                         │                    │
           node1 eth0 10.99.1.11/24 ─────┤                    ├── node2 eth0 10.99.2.12/24
           node3 eth0 10.99.1.13/24 ─────┘
           each node: caliXXXX ══ eth0 of a pod (10.65.<n>.10/32), vxlan.calico (the agent's)

The test writes what calico-node would: each Node (``bgp.ipv4Address`` with its prefix, VXLAN
tunnel address and MAC, IPIP tunnel address) and each node's IPAM block. etcd runs in the root
namespace on 127.0.0.1 and is reachable at the same address inside each node (``nsnet``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.datastore.client import Client, NotFound
from calico.datastore.etcd import EtcdClient
from calico.ipam import keys as ipam_keys
from calico.lib import netns as lib_netns
from tests.integration.agent.harness import FELIX, Prober, ip_batch, ours, profile, sh, sysctl
from tests.nsnet import Forwarder, socket_in_netns

OUTSIDE_IP = "203.0.113.1"
POD_MTU = 1400


def ipx(ns: str, line: str) -> None:
    sh("ip", "-n", ours(ns), *line.split())


def nsx(ns: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ours(ns), *argv, check=check)


@dataclass
class Pod:
    name: str
    ns: str
    ip: str
    iface: str
    node: str
    labels: dict[str, str]
    prober: Prober | None = None

    def wep(self) -> dict[str, Any]:
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": f"{self.node}-k8s-{self.name}-eth0",
                "namespace": "default",
                "labels": {**self.labels, "projectcalico.org/namespace": "default"},
            },
            "spec": {
                "node": self.node,
                "orchestrator": "k8s",
                "pod": self.name,
                "endpoint": "eth0",
                "interfaceName": self.iface,
                "ipNetworks": [f"{self.ip}/32"],
                "profiles": ["kns.default"],
            },
        }


@dataclass
class CNode:
    name: str
    ns: str
    subnet: int
    addr: str  # 10.99.<subnet>.<n>
    index: int
    run_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pods: list[Pod] = field(default_factory=list)

    @property
    def block(self) -> str:
        return f"10.65.{self.index}.0/26"

    @property
    def vxlan_addr(self) -> str:
        return f"10.65.{self.index}.1"

    @property
    def ipip_addr(self) -> str:
        return f"10.65.{self.index}.2"

    @property
    def mac(self) -> str:
        return f"66:ca:00:00:00:{self.index:02x}"

    def node_resource(self) -> dict[str, Any]:
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": self.name},
            "spec": {
                "bgp": {"ipv4Address": f"{self.addr}/24", "ipv4IPIPTunnelAddr": self.ipip_addr},
                "ipv4VXLANTunnelAddr": self.vxlan_addr,
                "vxlanTunnelMACAddr": self.mac,
            },
        }

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.run_dir / "felix-status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def readiness(self) -> tuple[int, dict[str, Any]]:
        def get() -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9099/readiness", timeout=1) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())
            except OSError:
                return 0, {}

        return lib_netns.call_in(self.ns, get)

    def link(self, dev: str) -> dict[str, Any] | None:
        out = nsx(self.ns, "ip", "-s", "-d", "-j", "link", "show", dev, check=False)
        data = json.loads(out or "[]")
        return data[0] if data else None

    def tx_packets(self, dev: str = "vxlan.calico") -> int:
        link = self.link(dev)
        return int(link["stats64"]["tx"]["packets"]) if link else 0

    def routes(self) -> str:
        return nsx(self.ns, "ip", "route", "show", "proto", "80")

    def neigh(self) -> str:
        return nsx(self.ns, "ip", "neigh", "show", "dev", "vxlan.calico", check=False)

    def fdb(self) -> str:
        return nsx(self.ns, "bridge", "fdb", "show", "dev", "vxlan.calico", check=False)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""


class Cluster:
    def __init__(self, make_netns: Callable[[], str], tmp: Path, etcd_endpoint: str) -> None:
        self._make_netns = make_netns
        self.tmp = tmp
        self.etcd_port = int(etcd_endpoint.rsplit(":", 1)[1])
        self.etcd = EtcdClient([etcd_endpoint])
        self.client = Client(self.etcd)
        self.router = ours(make_netns())
        self.outside = ours(make_netns())
        self.nodes: dict[str, CNode] = {}
        self._forwards: list[Forwarder] = []
        self._probers: list[Prober] = []
        self._servers: list[socket.socket] = []
        for k in (1, 2):
            ipx(self.router, f"link add br{k} type bridge")
            ipx(self.router, f"addr add 10.99.{k}.1/24 dev br{k}")
            ipx(self.router, f"link set br{k} up")
        ipx(self.router, f"link add out0 type veth peer name eth0 netns {self.outside}")
        ip_batch(self.router, ["addr add 203.0.113.254/24 dev out0", "link set out0 up"])
        ip_batch(
            self.outside,
            [
                f"addr add {OUTSIDE_IP}/24 dev eth0",
                "link set eth0 up",
                "route add 10.99.0.0/16 via 203.0.113.254",  # node subnets only: no pod route
            ],
        )
        sysctl(self.router, "net.ipv4.ip_forward=1")
        self.apply(profile("default"))

    # ---- datastore ----------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> None:
        self.client.apply(obj, validate=False)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.client.delete(kind, name, namespace)
        except NotFound:
            pass

    def pool(self, name: str, cidr: str, **spec: Any) -> None:
        self.apply(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, **spec},
            }
        )

    def write_block(self, cidr: str, node: str | None) -> None:
        net = ipam_keys.cidr_from_key(cidr.replace("/", "-"))
        value = {"cidr": cidr, "affinity": f"host:{node}" if node else None}
        self.etcd.put(ipam_keys.block_key(net), json.dumps(value))

    def delete_block(self, cidr: str) -> None:
        self.etcd.delete(ipam_keys.block_key(ipam_keys.cidr_from_key(cidr.replace("/", "-"))))

    # ---- nodes --------------------------------------------------------------------------------

    def add_node(self, name: str, subnet: int, index: int) -> CNode:
        ns = ours(self._make_netns())
        addr = f"10.99.{subnet}.{10 + index}"
        port = f"n{index}-{os.getpid() % 10000}"[:15]
        ipx(self.router, f"link add {port} type veth peer name eth0 netns {ns}")
        ipx(self.router, f"link set {port} master br{subnet} up")
        ip_batch(
            ns,
            [
                f"addr add {addr}/24 dev eth0",
                "link set eth0 up",
                f"route add default via 10.99.{subnet}.1",
            ],
        )
        sysctl(ns, "net.ipv4.ip_forward=1")
        self._forwards.append(Forwarder(ns, self.etcd_port))
        node = CNode(
            name, ns, subnet, addr, index, self.tmp / name / "run", self.tmp / f"{name}.log"
        )
        self.nodes[name] = node
        self.apply(node.node_resource())
        self.write_block(node.block, name)
        return node

    def start(self, node: CNode, **env: str) -> None:
        full = {
            **os.environ,
            "ETCD_ENDPOINTS": f"http://127.0.0.1:{self.etcd_port}",
            "NODENAME": node.name,
            "CALICO_RUN_DIR": str(node.run_dir),
            "FELIX_LOGSEVERITYSCREEN": os.environ.get("TEST_FELIX_LOG", "INFO"),
            "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT",
            "FELIX_CALCCHECKINTERVAL": "0.5",  # incremental == full recompute, checked live
            "FELIX_ROUTEREFRESHINTERVAL": "5",
            **env,
        }
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                ["ip", "netns", "exec", node.ns, str(FELIX)], env=full, stdout=log, stderr=log
            )

    def kill(self, node: CNode) -> None:
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait()
            node.proc = None

    def wait_ready(self, node: CNode, timeout: float = 20.0) -> None:
        wait_for(f"{node.name} ready", lambda: node.readiness()[0] == 200, timeout, node)

    def add_pod(
        self, node: CNode, name: str, labels: dict[str, str] | None = None, *, ip: str = ""
    ) -> Pod:
        ns = ours(self._make_netns())
        ip = ip or f"10.65.{node.index}.{10 + len(node.pods)}"
        iface = "cali" + hashlib.sha1(f"{node.name}.{name}".encode()).hexdigest()[:11]
        ipx(node.ns, f"link add {iface} type veth peer name eth0 netns {ns}")
        ip_batch(
            ns,
            [
                f"addr add {ip}/32 dev eth0",
                f"link set eth0 mtu {POD_MTU} up",
                "route add 169.254.1.1 dev eth0 scope link",
                "route add default via 169.254.1.1 dev eth0",
            ],
        )
        ip_batch(node.ns, [f"link set {iface} address ee:ee:ee:ee:ee:ee", f"link set {iface} up"])
        sysctl(
            node.ns,
            f"net.ipv4.conf.{iface}.proxy_arp=1",
            f"net.ipv4.neigh.{iface}.proxy_delay=0",
            f"net.ipv4.conf.{iface}.forwarding=1",
        )
        pod = Pod(name, ns, ip, iface, node.name, labels or {"app": name})
        pod.prober = Prober(ns)
        self._probers.append(pod.prober)
        node.pods.append(pod)
        self.apply(pod.wep())
        return pod

    # ---- traffic ------------------------------------------------------------------------------

    def serve_whoami(self, ns: str, ip: str, port: int) -> None:
        """TCP ``ip:port`` in ``ns``: answers one line, the source address it saw."""
        srv = socket_in_netns(ns)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((ip, port))
        srv.listen(16)
        self._servers.append(srv)

        def serve() -> None:
            while True:
                try:
                    conn, peer = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(f"{peer[0]}\n".encode())

        threading.Thread(target=serve, daemon=True).start()

    def serve_outside(self, port: int = 80) -> None:
        self.serve_whoami(self.outside, OUTSIDE_IP, port)

    def ask(
        self, pod: Pod, ip: str = OUTSIDE_IP, port: int = 80, timeout: float = 1.0
    ) -> str | None:
        """The source address a whoami server saw for a connection from ``pod`` (None: none)."""
        cli = socket_in_netns(pod.ns)
        cli.settimeout(timeout)
        try:
            cli.connect((ip, port))
            return cli.recv(100).decode().strip() or None
        except OSError:
            return None
        finally:
            cli.close()

    def close(self) -> None:
        for node in self.nodes.values():
            self.kill(node)
        for p in self._probers:
            p.close()
        for s in self._servers:
            s.close()
        for f in self._forwards:
            f.close()
        self.etcd.close()


def probe(src: Pod, dst: Pod, proto: str = "tcp", port: int = 80) -> bool:
    assert src.prober is not None
    return src.prober.ask(f"{proto} {dst.ip} {port}")


def wait_for(what: str, pred: Callable[[], Any], timeout: float, *nodes: CNode) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    logs = "\n".join(f"--- {n.name} log tail ---\n{n.log_tail()}" for n in nodes)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{logs}")


def expect_matrix(cases: list[tuple[Pod, Pod, str, int, bool]], *nodes: CNode) -> None:
    """Retry until every (src, dst, proto, port, ok) holds; print the mismatches otherwise."""
    deadline = time.monotonic() + 20.0
    while True:
        wrong = [
            f"  {s.name} -> {d.name} ({d.ip}) {proto}/{port}: expected {'ok' if ok else 'blocked'}"
            for s, d, proto, port, ok in cases
            if probe(s, d, proto, port) != ok
        ]
        if not wrong:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name} ---\n{n.routes()}{n.log_tail()}" for n in nodes)
            raise AssertionError("connectivity mismatch:\n" + "\n".join(wrong) + "\n" + logs)
        time.sleep(0.3)
