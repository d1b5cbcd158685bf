"""The same-run baselines: two fresh namespaces joined by a plain veth pair, and by the kernel's
own vxlan (and ipip where the kernel has it) over such a pair.

Every namespace is named ``calt-tput-<pid>-<hex>-<role>`` (the pid keeps other test sessions'
sweep of stale ``calt-`` namespaces away from it) and deleted by that name at the end; the
addresses (10.201-10.205.0.0/24) exist only inside them.

    veth:   [a] eth0 10.201.0.1 ---- eth0 10.201.0.2 [b]
    vxlan:  [va] u0 10.202.0.1 ---- u0 10.202.0.2 [vb]    underlay (veth)
                 vxlan0 10.203.0.1    vxlan0 10.203.0.2   VNI 4096, UDP 4789, MTU 1450
    ipip:   [ia] u0 10.204.0.1 ---- u0 10.204.0.2 [ib]
                 ipip0 10.205.0.1     ipip0 10.205.0.2    MTU 1480
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

    def _underlay(self, a: str, b: str, net: str, dev: str = "eth0") -> tuple[str, str]:
        """A veth pair between ``a`` and ``b`` with ``<net>.1`` and ``<net>.2``."""
        self._batch(a, [f"link add {dev} type veth peer name {dev} netns {b}"])
        ips = (f"{net}.1", f"{net}.2")
        for ns, ip in zip((a, b), ips, strict=True):
            self._batch(ns, [f"addr add {ip}/24 dev {dev}", f"link set {dev} up"])
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

    def close(self) -> None:
        for name in reversed(self.made):
            if name.startswith(self.prefix):
                netns.delete(name)
        self.made.clear()
