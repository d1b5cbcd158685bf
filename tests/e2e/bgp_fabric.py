"""A multi-host BGP test fabric: "hosts" are namespaces on one bridge, each runs calico-node.

Layout (all inside namespaces made by the make_netns fixture; the root namespace is untouched)::

    fabric netns: br0 ── h1 ══ eth0 (host1 netns, 10.99.0.1/24) ── caliXXXX ══ eth0 (pod netns)
                      ├─ h2 ══ eth0 (host2 netns, 10.99.0.2/24) ...
                      └─ h3 ══ eth0 (host3 netns, 10.99.0.3/24) ...

With ``subnets=N`` the hosts go round-robin onto N bridges ``br<k>`` (10.99.<k>.0/24, the host
keeps its number: host2 on the second subnet is 10.99.1.2) and the fabric namespace routes
between them as a cloud VPC would: it forwards between the host subnets and has no route to any
pod address, so pod traffic between subnets only works encapsulated.

etcd runs in the root namespace on 127.0.0.1 (the ``etcd_server`` fixture). Each host reaches it at
127.0.0.1:<port> inside its own namespace through :class:`tests.nsnet.Forwarder`: a listening
socket created in the host's namespace by a thread that ``setns()``-ed there, relaying to the root
namespace's 127.0.0.1. Nothing listens on a non-loopback address of the root namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from calico.lib import netns as lib_netns
from tests.nsnet import Forwarder

VENV_BIN = Path(sys.executable).parent


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def ours(netns: str) -> str:
    """``netns`` when it is a test namespace (``calt-``); refuse anything else, above all an empty
    name, before a command that would then act on the root namespace is built."""
    if not netns.startswith("calt-"):
        raise AssertionError(f"refusing to act in network namespace {netns!r}: not one of ours")
    return netns


def nsx(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ours(netns), *argv, check=check)


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 60, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# Predicates for wait_for: each binds its host and values, so a loop can hand one over as is


def sessions_with(host: Host, peers: Iterable[str]) -> Callable[[], bool]:
    """``host`` has Established sessions with exactly ``peers``."""
    want = sorted(peers)
    return lambda: sorted(host.established()) == want


def route_to(host: Host, prefix: str, version: int = 4) -> Callable[[], dict[str, Any] | None]:
    """``host``'s route to ``prefix``, once it has one."""
    return lambda: host.routes(version).get(prefix)


def no_route_to(host: Host, prefix: str, version: int = 4) -> Callable[[], bool]:
    """``host`` has no route to ``prefix``."""
    return lambda: prefix not in host.routes(version)


def routes_to_all(host: Host, prefixes: Iterable[str]) -> Callable[[], dict[str, dict[str, Any]]]:
    """``host``'s IPv4 routes, once they hold every one of ``prefixes`` (before: empty)."""
    wanted = list(prefixes)

    def check() -> dict[str, dict[str, Any]]:
        routes = host.routes()
        return routes if all(p in routes for p in wanted) else {}

    return check


def echoes(src_netns: str, ip: str) -> Callable[[], bool]:
    """A TCP echo from ``src_netns`` to ``ip`` comes back."""
    return lambda: tcp_echo(src_netns, ip)


@dataclass
class Host:
    name: str
    netns: str
    ip: str
    run_dir: Path
    log_dir: Path
    block: str
    proc: subprocess.Popen[bytes] | None = None
    pods: list[tuple[str, str]] = field(default_factory=list)  # (pod netns, pod ip)
    pods6: list[tuple[str, str]] = field(default_factory=list)
    ip6: str = ""
    block6: str = ""
    etcd_port: int = 0  # for calicoctl run on the host (node status reads the Node)

    def env(self, etcd_port: int, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "NODENAME": self.name,
            "ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_port}",
            "CALICO_RUN_DIR": str(self.run_dir),
            "CALICO_LOG_DIR": str(self.log_dir),
            "CALICO_DISABLE_FELIX": "true",
            "IP": "autodetect",
            "IP_AUTODETECTION_METHOD": "interface=eth0",
            # these tests route pods directly; Calico's default pool would be IPIP Always
            "CALICO_IPV4POOL_IPIP": "Never",
            **extra,
        }

    def health(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.run_dir / "health.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def routes(self, version: int = 4) -> dict[str, dict[str, Any]]:
        out = nsx(self.netns, "ip", "-j", f"-{version}", "route", "show").stdout
        return {r["dst"]: r for r in json.loads(out or "[]")}

    def node_status(self) -> str:
        env = {**os.environ, "CALICO_RUN_DIR": str(self.run_dir)}
        if self.etcd_port:
            env["ETCD_ENDPOINTS"] = f"http://127.0.0.1:{self.etcd_port}"
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ours(self.netns),
                str(VENV_BIN / "calicoctl"),
                "node",
                "status",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=30,
        )
        return proc.stdout + proc.stderr

    def established(self) -> list[str]:
        """Peer addresses whose session is Established, from `calicoctl node status`."""
        return [
            line.split("|")[1].strip()
            for line in self.node_status().splitlines()
            if line.startswith("|") and "Established" in line
        ]

    def log_tail(self) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*/current")):
            parts.append(f"--- {f}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


HOST_LL = (
    "fe80::ecee:eeff:feee:eeee"  # the link-local address of a caliX with MAC ee:ee:ee:ee:ee:ee
)


def ipx(netns: str, line: str) -> None:
    """``ip <line>`` in ``netns`` (words split on spaces)."""
    nsx(netns, "ip", *line.split())


def no_dad(netns: str) -> None:
    """No duplicate address detection in this namespace (addresses usable at once)."""
    for conf in ("all", "default"):
        nsx(netns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")


class Fabric:
    def __init__(
        self,
        make_netns: Callable[[], str],
        tmp: Path,
        etcd_port: int,
        n: int,
        *,
        ipv6: bool = False,
        subnets: int = 1,
    ) -> None:
        self.etcd_port = etcd_port
        self.fabric = make_netns()
        self.forwards: list[Forwarder] = []
        self.echo: list[EchoServer] = []
        for k in range(subnets):
            ipx(self.fabric, f"link add br{k} type bridge")
            ipx(self.fabric, f"link set br{k} up")
            # the hosts' default gateway (a real host has one; proxy ARP for 169.254.1.1 needs
            # a route); with several subnets, the router between them
            ipx(self.fabric, f"addr add 10.99.{k}.254/24 dev br{k}")
        if subnets > 1:
            nsx(self.fabric, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.hosts: list[Host] = []
        for i in range(1, n + 1):
            netns = make_netns()
            k = (i - 1) % subnets
            host = Host(
                f"host{i}",
                netns,
                f"10.99.{k}.{i}",
                tmp / f"host{i}" / "run",
                tmp / f"host{i}" / "log",
                f"192.168.{i}.0/26",
                etcd_port=etcd_port,
            )
            if ipv6:
                no_dad(netns)
                nsx(netns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            ipx(self.fabric, f"link add h{i} type veth peer name eth0 netns {netns}")
            ipx(self.fabric, f"link set h{i} master br{k} up")
            ipx(netns, f"addr add {host.ip}/24 dev eth0")
            if ipv6:
                host.ip6, host.block6 = f"fd99::{i}", f"fd80:24e2:0:{i}::/122"
                ipx(netns, f"-6 addr add {host.ip6}/64 dev eth0 nodad")
            ipx(netns, "link set eth0 up")
            ipx(netns, f"route add default via 10.99.{k}.254")
            nsx(netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.forwards.append(Forwarder(netns, etcd_port))
            self.hosts.append(host)

    def start(self, host: Host, **extra: str) -> None:
        host.log_dir.mkdir(parents=True, exist_ok=True)
        with open(host.log_dir / "calico-node.out", "ab") as log:
            host.proc = subprocess.Popen(
                ["ip", "netns", "exec", ours(host.netns), str(VENV_BIN / "calico-node")],
                env=host.env(self.etcd_port, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, host: Host) -> None:
        if host.proc is not None and host.proc.poll() is None:
            host.proc.send_signal(signal.SIGTERM)
            try:
                host.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(host.proc.pid, signal.SIGKILL)
                host.proc.wait(5)
        host.proc = None

    def add_pod(
        self, make_netns: Callable[[], str], host: Host, ip: str, ip6: str | None = None
    ) -> str:
        """A pod the way the CNI plugin builds one: /32 (and /128) on eth0, default via 169.254.1.1
        (IPv6: via the host veth's link-local address), host-side caliX with proxy ARP and
        /32 (/128) routes ``proto 80``."""
        pod = make_netns()
        if ip6:
            no_dad(pod)
        cali = "cali" + hashlib.sha1(pod.encode()).hexdigest()[:11]
        ipx(host.netns, f"link add {cali} type veth peer name eth0 netns {pod}")
        ipx(host.netns, f"link set {cali} address ee:ee:ee:ee:ee:ee up")
        nsx(host.netns, "sysctl", "-qw", f"net.ipv4.conf.{cali}.proxy_arp=1")
        nsx(host.netns, "sysctl", "-qw", f"net.ipv4.neigh.{cali}.proxy_delay=0")
        ipx(host.netns, f"route add {ip}/32 dev {cali} proto 80")
        ipx(pod, f"addr add {ip}/32 dev eth0")
        ipx(pod, "link set eth0 up")
        ipx(pod, "route add 169.254.1.1 dev eth0 scope link")
        ipx(pod, "route add default via 169.254.1.1 dev eth0")
        if ip6:
            ipx(host.netns, f"-6 route add {ip6}/128 dev {cali} proto 80")
            ipx(pod, f"-6 addr add {ip6}/128 dev eth0 nodad")
            ipx(pod, f"-6 route add default via {HOST_LL} dev eth0")
            host.pods6.append((pod, ip6))
        host.pods.append((pod, ip))
        self.echo.append(EchoServer(pod))
        return pod

    def close(self) -> None:
        for h in self.hosts:
            self.stop(h)
        for f in self.forwards:
            f.close()
        for e in self.echo:
            e.close()


def claim_block(etcd: Any, host: str, cidr: str) -> None:
    """This host's affinity for ``cidr`` (Calico's key layout, confirmed)."""
    net, plen = cidr.split("/")
    version = 6 if ":" in net else 4
    etcd.put(
        f"/calico/ipam/v2/host/{host}/ipv{version}/block/{net}-{plen}",
        '{"state":"confirmed","deleted":false}',
    )


class EchoServer:
    """A TCP echo server listening on [::]:<port> (IPv4 too) inside a pod's namespace."""

    def __init__(self, netns: str, port: int = 7777) -> None:
        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", port))
            s.listen(16)
            return s

        self.port = port
        self.sock: socket.socket = lib_netns.call_in(netns, listen)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.sendall(conn.recv(1024))
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def tcp_echo(src_netns: str, ip: str, port: int = 7777, timeout: float = 1.0) -> bool:
    """Connect from ``src_netns`` to ip:port, send a payload, expect it back (real TCP)."""
    payload = secrets.token_bytes(16)

    def talk() -> bool:
        try:
            with socket.create_connection((ip, port), timeout=timeout) as c:
                c.sendall(payload)
                return c.recv(1024) == payload
        except OSError:
            return False

    return bool(lib_netns.call_in(src_netns, talk))


# The marks every BGP end-to-end test carries.
BGP_E2E_MARKS = [
    pytest.mark.e2e,
    pytest.mark.netns,
    pytest.mark.etcd,
    pytest.mark.bird,
    pytest.mark.timeout(240),
]


@contextlib.contextmanager
def running_fabric(
    make_netns: Callable[[], str],
    tmp_path: Path,
    etcd_port: int,
    etcd: Any,
    hosts: int,
    *,
    ipv6: bool = False,
    subnets: int = 1,
) -> Iterator[Fabric]:
    """A fabric of ``hosts``, one IPAM block (two with ``ipv6``) claimed per host; closed after."""
    fab = Fabric(make_netns, tmp_path, etcd_port, hosts, ipv6=ipv6, subnets=subnets)
    try:
        for h in fab.hosts:
            claim_block(etcd, h.name, h.block)
            if ipv6:
                claim_block(etcd, h.name, h.block6)
        yield fab
    finally:
        fab.close()
