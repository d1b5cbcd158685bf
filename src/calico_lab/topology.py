"""The lab's L2 fabric: a bridge in the core namespace and one veth per node namespace.

::

    calab-<lab>-core                      calab-<lab>-node1 ...
    +----------------------------+        +----------------------+
    | br0 10.99.0.1/24  etcd     |--node1-|-- eth0 10.99.0.11/24  |  calico-node (felix, BIRD)
    |                            |--node2-|-- eth0 10.99.0.12/24  |
    +----------------------------+        +----------------------+

Every link is created from inside a lab namespace with its peer born in the other lab namespace, so
the root namespace is never touched. Each step checks first, so it can be repeated (``up`` is
idempotent).
"""

from __future__ import annotations

from calico.lib import netns
from calico.lib.cmd import run
from calico_lab.state import BRIDGE, bridge_ip

PREFIX_LEN = 24


def _link_exists(ns: str, name: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", "dev", name], check=False).returncode == 0


def _batch(ns: str, commands: list[str]) -> None:
    run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")


def ensure_core(core: str) -> None:
    """The core namespace with the lab bridge and its address."""
    netns.add(core)
    if not _link_exists(core, BRIDGE):
        _batch(
            core,
            [
                f"link add {BRIDGE} type bridge",
                f"addr add {bridge_ip()}/{PREFIX_LEN} dev {BRIDGE}",
                f"link set {BRIDGE} up",
            ],
        )


def ensure_node(core: str, node: str, node_ns: str, ip: str) -> None:
    """A node namespace joined to the bridge: ``eth0`` with ``ip``, forwarding on."""
    netns.add(node_ns)
    if not _link_exists(core, node):
        _batch(core, [f"link add {node} type veth peer name eth0 netns {node_ns}"])
    _batch(core, [f"link set {node} master {BRIDGE}", f"link set {node} up"])
    addrs = run(["ip", "-n", node_ns, "-o", "addr", "show", "dev", "eth0"]).stdout
    cmds = [] if f" {ip}/" in addrs else [f"addr add {ip}/{PREFIX_LEN} dev eth0"]
    # A default route, as a real host has: the kernel only proxy-ARPs for the pods' gateway
    # (169.254.1.1) when it has a route to it. The core namespace does not forward, so nothing
    # sent this way leaves the lab.
    _batch(
        node_ns, [*cmds, "link set eth0 up", f"route replace default via {bridge_ip()} dev eth0"]
    )
    netns.sysctl(
        node_ns,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
        },
    )


def links(ns: str) -> list[str]:
    """Names of the links in ``ns`` (for status and leak checks)."""
    if not netns.exists(ns):
        return []
    out = run(["ip", "-n", ns, "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
