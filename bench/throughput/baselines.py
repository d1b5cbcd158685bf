"""The same-run baselines: two fresh namespaces joined by a plain veth pair, and by the kernel's
own vxlan (and ipip where the kernel has it) over such a pair; and, hop by hop, the shapes of the
lab's pod paths without Calico: a routing namespace between two veths (the same-node path), the
same with conntrack on, and two routing namespaces joined through a bridge (the cross-node path).

Every namespace is named ``calt-tput-<pid>-<hex>-<role>`` (the pid keeps other test sessions'
sweep of stale ``calt-`` namespaces away from it) and deleted by that name at the end; the
addresses (10.201-10.205.0.0/24) exist only inside them.

    veth:   [a] eth0 10.201.0.1 ---- eth0 10.201.0.2 [b]
    vxlan:  [va] u0 10.202.0.1 ---- u0 10.202.0.2 [vb]    underlay (veth)
                 vxlan0 10.203.0.1    vxlan0 10.203.0.2   VNI 4096, UDP 4789, MTU 1450
    ipip:   [ia] u0 10.204.0.1 ---- u0 10.204.0.2 [ib]
                 ipip0 10.205.0.1     ipip0 10.205.0.2    MTU 1480
    routed: [ra] eth0 10.206.1.2 ---- ra 10.206.1.1 [rr] rb 10.206.2.1 ---- eth0 10.206.2.2 [rb]
            rr forwards (no nft); "+ conntrack" (10.208.x): one forward rule, ct established accept
    bridged: [xa] -- [x1] eth0 10.207.0.1 -- br0 [xc] br0 -- eth0 10.207.0.2 [x2] -- [xb]
            10.207.1.0/24 behind x1, 10.207.2.0/24 behind x2; x1 and x2 forward (no nft)
            "vxlan" ([va]..[vb]): x1 and x2 route to each other's side over vxlan0 10.209.0.1-2
            (over eth0 and the bridge), MTU 1450 on vxlan0 and the ends' links
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from calico.lib import cmd, netns

VXLAN_VNI = 4096
VXLAN_PORT = 4789


@dataclass
class Pair:
    """A client and a server namespace and the server's address."""

    label: str
    client: str
    server: str
    server_ip: str


@dataclass
class Baselines:
    prefix: str = field(default_factory=lambda: f"calt-tput-{os.getpid()}-{secrets.token_hex(3)}-")
    made: list[str] = field(default_factory=list)

    def _ns(self, role: str) -> str:
        name = f"{self.prefix}{role}"
        self.made.append(name)
        netns.add(name)
        return name

    def _batch(self, ns: str, commands: list[str]) -> None:
        cmd.run_process(
            ["ip", "-n", ns, "-batch", "-"],
            input="\n".join(commands) + "\n",
            text=True,
            check=True,
            capture_output=True,
        )

    def _underlay(
        self, a: str, b: str, net: str, dev: str = "eth0", *, peer: str = "", mtu: str = ""
    ) -> tuple[str, str]:
        """A veth pair between ``a`` (``dev``) and ``b`` (``peer``, else ``dev``) with ``<net>.1``
        and ``<net>.2`` (and ``mtu`` on both ends when given)."""
        peer = peer or dev
        mtu = f" mtu {mtu}" if mtu else ""
        self._batch(a, [f"link add {dev}{mtu} type veth peer name {peer}{mtu} netns {b}"])
        ips = (f"{net}.1", f"{net}.2")
        for ns, ip, name in ((a, ips[0], dev), (b, ips[1], peer)):
            self._batch(ns, [f"addr add {ip}/24 dev {name}", f"link set {name} up"])
        return ips

    def veth(self) -> Pair:
        a, b = self._ns("a"), self._ns("b")
        _, server_ip = self._underlay(a, b, "10.201.0")
        return Pair("veth", a, b, server_ip)

    def vxlan(self) -> Pair:
        a, b = self._ns("va"), self._ns("vb")
        ua, ub = self._underlay(a, b, "10.202.0", "u0")
        for ns, local, remote, ip in ((a, ua, ub, "10.203.0.1"), (b, ub, ua, "10.203.0.2")):
            self._batch(
                ns,
                [
                    f"link add vxlan0 type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} "
                    f"local {local} remote {remote} dev u0",
                    f"addr add {ip}/24 dev vxlan0",
                    "link set vxlan0 up",
                ],
            )
        return Pair("kernel vxlan", a, b, "10.203.0.2")

    def ipip(self) -> Pair | str:
        """The ipip pair, or why the kernel cannot make one."""
        a, b = self._ns("ia"), self._ns("ib")
        ua, ub = self._underlay(a, b, "10.204.0", "u0")
        for ns, local, remote, ip in ((a, ua, ub, "10.205.0.1"), (b, ub, ua, "10.205.0.2")):
            add = ["link", "add", "ipip0", "type", "ipip", "local", local, "remote", remote]
            proc = cmd.run_process(
                ["ip", "-n", ns, *add, "dev", "u0"],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                return f"the kernel cannot make an ipip device ({proc.stderr.strip()})"
            self._batch(ns, [f"addr add {ip}/24 dev ipip0", "link set ipip0 up"])
        return Pair("kernel ipip", a, b, "10.205.0.2")

    def _end(self, r: str, ns: str, side: str, net: str, mtu: str = "") -> None:
        """``ns`` on a veth (its ``eth0``, ``<net>.2``) to router ``r`` (``side``, ``<net>.1``),
        default route through it; ``r`` forwards."""
        self._underlay(r, ns, net, side, peer="eth0", mtu=mtu)
        self._batch(ns, [f"route add default via {net}.1"])
        netns.sysctl(r, {"net.ipv4.ip_forward": "1"})

    def _routed_ends(self, a: str, r: str, b: str, net: str) -> str:
        """``a`` and ``b`` each on a veth to router ``r`` (``<net>.1.0/24``, ``<net>.2.0/24``),
        default routes through it; returns ``b``'s address."""
        self._end(r, a, "ra", f"{net}.1")
        self._end(r, b, "rb", f"{net}.2")
        return f"{net}.2.2"

    def routed(self, *, conntrack: bool = False) -> Pair:
        """The same-node pod path's shape: veth, a forwarding namespace, veth."""
        tag = "c" if conntrack else ""
        a, r, b = self._ns(f"r{tag}a"), self._ns(f"r{tag}r"), self._ns(f"r{tag}b")
        server_ip = self._routed_ends(a, r, b, "10.208" if conntrack else "10.206")
        if conntrack:
            cmd.run_process(
                ["ip", "netns", "exec", r, "nft", "-f", "-"],
                input="table inet calt-tput {\n chain fw {\n"
                "  type filter hook forward priority filter; policy accept;\n"
                "  ct state established,related accept\n }\n}\n",
                text=True, check=True, capture_output=True,
            )  # fmt: skip
            return Pair("routed veth + conntrack", a, b, server_ip)
        return Pair("routed veth", a, b, server_ip)

    def bridged(self, *, vxlan: bool = False) -> Pair:
        """The cross-node pod path's shape: veth, forwarding namespace, veth, bridge, veth,
        forwarding namespace, veth. ``vxlan``: the two forwarding namespaces reach each other's
        side through the kernel's vxlan over the bridge (VNI 4096, MTU 1450, and the ends' MTU
        1450 like the lab's pods in VXLAN mode): the lab's VXLAN path without Calico."""
        t = "v" if vxlan else "x"
        a, r1, core = self._ns(f"{t}a"), self._ns(f"{t}1"), self._ns(f"{t}c")
        r2, b = self._ns(f"{t}2"), self._ns(f"{t}b")
        self._batch(core, ["link add br0 type bridge", "link set br0 up"])
        for r, side, ip, other in ((r1, "p1", "10.207.0.1", 2), (r2, "p2", "10.207.0.2", 1)):
            self._batch(
                core,
                [
                    f"link add {side} type veth peer name eth0 netns {r}",
                    f"link set {side} master br0",
                    f"link set {side} up",
                ],
            )
            self._batch(r, [f"addr add {ip}/24 dev eth0", "link set eth0 up"])
            if not vxlan:
                self._batch(r, [f"route add 10.207.{other}.0/24 via 10.207.0.{other}"])
                continue
            self._batch(
                r,
                [
                    f"link add vxlan0 type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} "
                    f"local {ip} remote 10.207.0.{other} dev eth0",
                    f"addr add 10.209.0.{3 - other}/24 dev vxlan0",
                    "link set vxlan0 up",
                    f"route add 10.207.{other}.0/24 via 10.209.0.{other} dev vxlan0",
                ],
            )
        mtu = "1450" if vxlan else ""
        self._end(r1, a, "ra", "10.207.1", mtu)
        self._end(r2, b, "rb", "10.207.2", mtu)
        return Pair("routed bridged vxlan" if vxlan else "routed bridged", a, b, "10.207.2.2")

    def close(self) -> None:
        for name in reversed(self.made):
            if name.startswith(self.prefix):
                netns.delete(name)
        self.made.clear()
