"""The pod's network: a veth pair (``cali<hash>`` on the host, CNI_IFNAME in the pod).

One path for IPv4, IPv6 and dual stack, all rtnetlink from this process (:mod:`calico.cni.netlink`):
:func:`setup` runs two steps, and on failure deletes the veth again:

* :func:`create_link` — the veth, its pod end born directly in the pod namespace (given as an open
  file descriptor), the host end still down.
* :func:`configure` — host side: for IPv6 ``addrgenmode none`` and our own link-local (``nodad``,
  so the pod's default route works at once), host sysctls, link up, the host routes (``replace``:
  the policy agent may have programmed them first); pod side, through a netlink socket made inside
  the pod namespace: addresses (IPv6 ``nodad``), link up, the on-link IPv4 gateway and the default
  routes.

Host side: MAC ``ee:ee:ee:ee:ee:ee``, no address, proxy_arp=1, neigh proxy_delay=0, forwarding=1
(IPv6: proxy_ndp=1, forwarding=1, ``fe80::ecee:eeff:feee:eeee/64``); route ``<ip>/32 dev caliX scope
link proto 80`` (``<ip6>/128 dev caliX proto 80``). Pod side: ``<ip>/32`` on eth0, ``169.254.1.1``
on link and the default route via it; ``<ip6>/128`` and ``::/0`` via the host's link-local.
Host-side sysctls are plain writes to ``/proc/sys`` (they apply to the writer's namespace: the
host). CHECK reads the result back with ``ip -j`` (:func:`check`): an independent reader of what
this module wrote.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
from typing import Any

from calico.cni import netlink
from calico.lib.cmd import CmdError, run

HOST_MAC = "ee:ee:ee:ee:ee:ee"
HOST_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"
GATEWAY_V4 = "169.254.1.1"
ROUTE_PROTO = 80


class DataplaneError(Exception):
    pass


def host_veth_name(workload_key: str) -> str:
    """``cali`` + 11 hex characters of sha1(``<namespace>.<pod>`` or the container id)."""
    return "cali" + hashlib.sha1(workload_key.encode()).hexdigest()[:11]


def random_mac() -> str:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def _write_sysctl(path: str, value: str) -> None:
    with open("/proc/sys/net/" + path, "w") as f:
        f.write(value)


def create_link(*, netns_fd: int, ifname: str, host_if: str, mtu: int, pod_mac: str) -> None:
    """Create the veth (pod end born in the namespace ``netns_fd`` refers to), host end down.

    A stale veth of the same name (an earlier sandbox of this pod) is replaced."""
    with netlink.Netlink() as nl:
        for attempt in (1, 2):
            try:
                nl.add_veth(
                    name=host_if, mac=HOST_MAC, mtu=mtu, peer=ifname, peer_mac=pod_mac,
                    peer_netns_fd=netns_fd, up=False,
                )  # fmt: skip
                return
            except netlink.NetlinkError as exc:
                if exc.errno != errno.EEXIST or attempt == 2:
                    raise DataplaneError(f"creating veth {host_if}: {exc.strerror}") from exc
            delete_link(host_if)


def configure(
    *, netns_fd: int, ifname: str, host_if: str, ipv4: list[str], ipv6: list[str]
) -> None:
    """Host side, then pod side (see the module docstring); DataplaneError names the step."""
    index = link_index(host_if)
    if index is None:
        raise DataplaneError(f"host interface {host_if} does not exist")
    try:
        with netlink.Netlink() as nl:
            _configure_host(nl, index, host_if, ipv4=ipv4, ipv6=ipv6)
        pod, pod_index = netlink.in_netns(netns_fd, ifname)
        with pod:
            _configure_pod(pod, pod_index, ipv4=ipv4, ipv6=ipv6)
    except netlink.NetlinkError as exc:
        raise DataplaneError(f"configuring {host_if}/{ifname}: {exc.strerror}") from exc


def _configure_host(
    nl: netlink.Netlink, index: int, host_if: str, *, ipv4: list[str], ipv6: list[str]
) -> None:
    if ipv6:
        nl.no_ipv6_autoconf(index)
        nl.add_addr(index, HOST_LINK_LOCAL, 64, scope=netlink.RT_SCOPE_LINK, nodad=True)
        _write_sysctl(f"ipv6/conf/{host_if}/proxy_ndp", "1")
        _write_sysctl(f"ipv6/conf/{host_if}/forwarding", "1")
    _write_sysctl(f"ipv4/conf/{host_if}/proxy_arp", "1")
    _write_sysctl(f"ipv4/neigh/{host_if}/proxy_delay", "0")
    _write_sysctl(f"ipv4/conf/{host_if}/forwarding", "1")
    nl.link_up(index)
    for ip in ipv4 + ipv6:
        nl.add_route(index, ip, 128 if ":" in ip else 32, proto=ROUTE_PROTO, replace=True)


def _configure_pod(nl: netlink.Netlink, index: int, *, ipv4: list[str], ipv6: list[str]) -> None:
    for ip in ipv4:
        nl.add_addr(index, ip, 32)
    for ip in ipv6:
        nl.add_addr(index, ip, 128, nodad=True)
    nl.link_up(index)
    if ipv4:
        nl.add_route(index, GATEWAY_V4, 32)
        nl.add_route(index, "0.0.0.0", 0, gateway=GATEWAY_V4)
    if ipv6:
        nl.add_route(index, "::", 0, gateway=HOST_LINK_LOCAL)


def setup(
    *, netns_fd: int, ifname: str, host_if: str, mtu: int, pod_mac: str, ipv4: list[str],
    ipv6: list[str],
) -> None:  # fmt: skip
    """The pod's whole network (:func:`create_link`, then :func:`configure`); nothing is left
    when it fails."""
    create_link(netns_fd=netns_fd, ifname=ifname, host_if=host_if, mtu=mtu, pod_mac=pod_mac)
    try:
        configure(netns_fd=netns_fd, ifname=ifname, host_if=host_if, ipv4=ipv4, ipv6=ipv6)
    except BaseException:
        delete_link(host_if)
        raise


def delete_link(host_if: str) -> bool:
    """Delete the host veth by name (its pod peer and routes go with it); False if it was gone."""
    index = link_index(host_if)
    return index is not None and delete_index(index)


def link_index(name: str) -> int | None:
    """The interface index of ``name`` in this namespace, or None when it does not exist."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def delete_index(index: int) -> bool:
    """Delete the link with interface index ``index`` (a veth takes its peer and routes with it)
    with one rtnetlink request; False if it was already gone. By index, not name: a newer veth
    that took the name meanwhile is never touched."""
    try:
        with netlink.Netlink() as nl:
            return nl.delete_link(index)
    except netlink.NetlinkError as exc:
        raise DataplaneError(f"deleting interface #{index}: {exc.strerror}") from exc


# ---- CHECK: read back with `ip -j` -----------------------------------------------------------


def pod_argv(netns: str, argv: list[str]) -> list[str]:
    """Run ``argv`` inside the pod's network namespace given as a path (any runtime's form).

    Always through ``nsenter --net``, never ``ip -n``: ``ip -n`` also makes a mount namespace
    to remount /sys, which a CNI server thread chrooted to its caller's root cannot do."""
    return ["nsenter", f"--net={netns}", *argv]


def _ip_json(argv: list[str], netns: str | None = None) -> list[dict[str, Any]]:
    full = ["ip", "-j", *argv]
    try:
        out = run(pod_argv(netns, full) if netns else full, timeout=30).stdout
    except CmdError as exc:
        raise DataplaneError(exc.stderr or str(exc)) from exc
    data: list[dict[str, Any]] = json.loads(out or "[]")
    return data


def check(*, netns: str, ifname: str, host_if: str, addresses: list[str]) -> list[str]:
    """Problems found with the pod's network (empty when it is as ADD built it)."""
    problems: list[str] = []
    try:
        host_links = _ip_json(["link", "show", "dev", host_if])
    except DataplaneError:
        return [f"host interface {host_if} does not exist"]
    if host_links and "UP" not in host_links[0].get("flags", []):
        problems.append(f"host interface {host_if} is down")
    if not os.path.exists(netns):
        return [*problems, f"network namespace {netns} does not exist"]
    try:
        addrs = _ip_json(["addr", "show", "dev", ifname], netns)
    except DataplaneError:
        return [*problems, f"interface {ifname} does not exist in {netns}"]
    have = {f"{a['local']}/{a['prefixlen']}" for link in addrs for a in link.get("addr_info", [])}
    problems += [f"{ifname} lacks address {want}" for want in addresses if want not in have]
    routes = _ip_json(["route", "show", "default"], netns)
    if any(":" not in a for a in addresses) and not any(
        r.get("gateway") == GATEWAY_V4 and r.get("dev") == ifname for r in routes
    ):
        problems.append(f"no default route via {GATEWAY_V4} dev {ifname}")
    if any(":" in a for a in addresses):
        routes6 = _ip_json(["-6", "route", "show", "default"], netns)
        if not any(r.get("gateway") == HOST_LINK_LOCAL and r.get("dev") == ifname for r in routes6):
            problems.append(f"no IPv6 default route via {HOST_LINK_LOCAL} dev {ifname}")
    host_routes = {r.get("dst") for r in _ip_json(["route", "show", "dev", host_if])}
    host_routes |= {r.get("dst") for r in _ip_json(["-6", "route", "show", "dev", host_if])}
    for want in addresses:
        bare = want.partition("/")[0]
        if bare not in host_routes and want not in host_routes:
            problems.append(f"no host route to {want} via {host_if}")
    return problems
