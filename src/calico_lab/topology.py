"""The lab's network: node subnets joined by a router (the core namespace), and an outside host.

::

    calab-<lab>-core (the router)                  calab-<lab>-node1 ...
    +--------------------------------------+       +-----------------------+
    | br0 10.99.0.1/24  etcd, pod API      |-node1-|- eth0 10.99.0.11/24   | calico-node
    | br1 10.99.1.1/24                     |-node2-|- eth0 10.99.1.12/24   | (felix, BIRD)
    | ...                                  |       +-----------------------+
    | outside 203.0.113.254/24             |-------- eth0 203.0.113.1/24  calab-<lab>-outside
    | nft table ip calab-<lab>-router:     |         (TCP 80: answers the source address seen)
    |   forward: node subnets <-> node     |
    |   subnets and outside; else drop     |
    +--------------------------------------+

Nodes on one subnet talk over that subnet's bridge (L2; the bridge never hands frames to the
firewall: ``bridge-nf-call-*`` is off in the core). Between subnets and to ``outside`` the core
routes, like a cloud VPC router: it forwards only packets whose source *and* destination are node
subnets or the outside network, and it has no route to any pod CIDR, so pod-addressed traffic
crossing a subnet boundary is dropped unless it is encapsulated (VXLAN/IPIP) or masqueraded
(natOutgoing). Every link is created from inside a lab namespace with its peer born in another lab
namespace, so the root namespace is never touched. Each step checks first (``up`` is idempotent).
"""

from __future__ import annotations

from calico.lib import netns
from calico.lib.cmd import run
from calico_lab import network

NODE_SIDE = "eth0"
OUTSIDE_LINK = "outside"  # the router's end of the outside host's link
ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.send_redirects": "0",  # nodes of one subnet talk directly anyway
    "net.ipv4.conf.default.send_redirects": "0",
}
# Bridged frames must not reach the forward hook (br_netfilter): only routed traffic is filtered.
BRIDGE_NF = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


def _link_exists(ns: str, name: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", "dev", name], check=False).returncode == 0


def _batch(ns: str, commands: list[str]) -> None:
    run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")


def _has_addr(ns: str, dev: str, ip: str) -> bool:
    out = run(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", dev]).stdout
    return f" {ip}/" in out


def router_table(lab: str) -> str:
    """The nft table (family ``ip``) the router filters with: named with the lab's prefix."""
    return f"calab-{lab}-router"


def router_ruleset(lab: str, subnets: int) -> str:
    """The router's firewall as one ``nft -f`` transaction (replaces any previous version).

    Forward policy drop; accepted: source and destination both in ``@hosts`` (every node subnet
    and the outside network). Counters make ``nft list table`` show what was dropped."""
    table = router_table(lab)
    hosts = ", ".join([*(network.subnet_cidr(k) for k in range(subnets)), network.OUTSIDE_NET])
    return (
        f"table ip {table} {{}}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        f"  set hosts {{ type ipv4_addr; flags interval; elements = {{ {hosts} }}; }}\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ip saddr @hosts ip daddr @hosts counter accept\n"
        '    counter comment "not between node subnets and outside: dropped"\n'
        "  }\n"
        "}\n"
    )


def ensure_core(core: str, lab: str, subnets: int) -> None:
    """The core namespace as the router: one bridge per subnet with its ``.1`` address,
    forwarding on, the firewall table in place."""
    netns.add(core)
    for k in range(subnets):
        bridge, addr = network.bridge_name(k), network.router_ip(k)
        cmds = []
        if not _link_exists(core, bridge):
            cmds.append(f"link add {bridge} type bridge")
        if cmds or not _has_addr(core, bridge, addr):
            cmds.append(f"addr add {addr}/{network.PREFIX_LEN} dev {bridge}")
        _batch(core, [*cmds, f"link set {bridge} up"])
    # -e: a kernel without br_netfilter has no such keys (and then nothing to switch off)
    bridge_nf = [f"{key}=0" for key in BRIDGE_NF]
    run(["ip", "netns", "exec", core, "sysctl", "-q", "-e", "-w", *bridge_nf])
    netns.sysctl(core, ROUTER_SYSCTLS)
    run(["ip", "netns", "exec", core, "nft", "-f", "-"], input=router_ruleset(lab, subnets))


def ensure_node(core: str, node: str, node_ns: str, ip: str, *, subnet: int = 0) -> None:
    """A node namespace joined to its subnet's bridge: ``eth0`` with ``ip``/24, forwarding on,
    default route via the subnet's router address."""
    netns.add(node_ns)
    if not _link_exists(core, node):
        _batch(core, [f"link add {node} type veth peer name {NODE_SIDE} netns {node_ns}"])
    _batch(core, [f"link set {node} master {network.bridge_name(subnet)}", f"link set {node} up"])
    cmds = [] if _has_addr(node_ns, NODE_SIDE, ip) else [f"addr add {ip}/24 dev {NODE_SIDE}"]
    # A default route, as a real host has (the kernel only proxy-ARPs for the pods' gateway
    # 169.254.1.1 when a route to it exists); the router forwards only between lab hosts.
    gateway = network.router_ip(subnet)
    _batch(
        node_ns,
        [*cmds, f"link set {NODE_SIDE} up", f"route replace default via {gateway} dev {NODE_SIDE}"],
    )
    netns.sysctl(
        node_ns,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
        },
    )


def ensure_outside(core: str, outside_ns: str) -> None:
    """The outside host: ``eth0`` 203.0.113.1/24, default route via the router."""
    netns.add(outside_ns)
    if not _link_exists(core, OUTSIDE_LINK):
        _batch(
            core, [f"link add {OUTSIDE_LINK} type veth peer name {NODE_SIDE} netns {outside_ns}"]
        )
    prefix = network.OUTSIDE_NET.split("/")[1]
    router = (
        []
        if _has_addr(core, OUTSIDE_LINK, network.OUTSIDE_GATEWAY)
        else [f"addr add {network.OUTSIDE_GATEWAY}/{prefix} dev {OUTSIDE_LINK}"]
    )
    _batch(core, [*router, f"link set {OUTSIDE_LINK} up"])
    host = (
        []
        if _has_addr(outside_ns, NODE_SIDE, network.OUTSIDE_IP)
        else [f"addr add {network.OUTSIDE_IP}/{prefix} dev {NODE_SIDE}"]
    )
    _batch(
        outside_ns,
        [
            *host,
            f"link set {NODE_SIDE} up",
            f"route replace default via {network.OUTSIDE_GATEWAY} dev {NODE_SIDE}",
        ],
    )


def links(ns: str) -> list[str]:
    """Names of the links in ``ns`` (for status and leak checks)."""
    if not netns.exists(ns):
        return []
    out = run(["ip", "-n", ns, "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
