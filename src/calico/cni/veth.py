"""The pod's network: a veth pair (``cali<hash>`` on the host, CNI_IFNAME in the pod).

IPv4 only (the common case), everything is rtnetlink from this process (:mod:`calico.cni.netlink`):
``create_link`` (the veth with its peer born directly in the pod namespace, host end up) can run
while IPAM talks to etcd; then ``configure`` adds the host routes and, through a socket made in the
pod namespace, the pod side (address, link up, routes). With IPv6 the same steps are ``ip -batch``
runs (``ip -n NAME`` for /var/run/netns paths, else ``nsenter --net=<CNI_NETNS>``), host and pod
side concurrently. Host-side sysctls are plain writes to ``/proc/sys`` (they apply to the writer's
namespace: the host). ``Job`` is the background-thread helper for the overlap.

Host side: MAC ``ee:ee:ee:ee:ee:ee``, no address, proxy_arp=1, neigh proxy_delay=0, forwarding=1;
route ``<ip>/32 dev caliX scope link proto 80``. Pod side: ``<ip>/32`` on eth0, ``169.254.1.1`` on
link and the default route via it (IPv6: ``<ip>/128`` and the default via the host veth's link-local
``fe80::ecee:eeff:feee:eeee``, which we add ourselves so it needs no DAD wait).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from calico.cni import netlink
from calico.lib.cmd import CmdError, run

HOST_MAC = "ee:ee:ee:ee:ee:ee"
HOST_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"
GATEWAY_V4 = "169.254.1.1"
ROUTE_PROTO = "80"


class DataplaneError(Exception):
    pass


def host_veth_name(workload_key: str) -> str:
    """``cali`` + 11 hex characters of sha1(``<namespace>.<pod>`` or the container id)."""
    return "cali" + hashlib.sha1(workload_key.encode()).hexdigest()[:11]


def random_mac() -> str:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def pod_argv(netns: str, argv: list[str]) -> list[str]:
    """Run ``argv`` inside the pod's network namespace given as a path (any runtime's form).

    ``ip`` switches into a named namespace (``/var/run/netns/NAME``) itself: one exec, no nsenter.
    """
    head, _, name = netns.rpartition("/")
    if argv[0] == "ip" and head in ("/var/run/netns", "/run/netns") and name:
        return ["ip", "-n", name, *argv[1:]]
    return ["nsenter", f"--net={netns}", *argv]


def ip_batch(lines: list[str], *, netns: str | None = None) -> None:
    argv = ["ip", "-batch", "-"]
    try:
        run(pod_argv(netns, argv) if netns else argv, input="\n".join(lines) + "\n", timeout=30)
    except CmdError as exc:
        raise DataplaneError(exc.stderr or str(exc)) from exc


def _write_sysctl(path: str, value: str) -> None:
    with open("/proc/sys/net/" + path, "w") as f:
        f.write(value)


class Job:
    """Run one step in a background thread (``ip`` waits release the GIL); ``wait`` re-raises."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def create_link(
    *, netns: str, ifname: str, host_if: str, mtu: int, pod_mac: str, ipv6: bool
) -> None:
    """Create the veth (pod end born in ``netns``), bring the host end up, set its sysctls."""
    if not os.path.exists(netns):
        raise DataplaneError(f"CNI_NETNS {netns}: no such network namespace")
    if not ipv6:
        _create_link_nl(netns=netns, ifname=ifname, host_if=host_if, mtu=mtu, pod_mac=pod_mac)
    else:
        _create_link_ip(netns=netns, ifname=ifname, host_if=host_if, mtu=mtu, pod_mac=pod_mac)
    _write_sysctl(f"ipv4/conf/{host_if}/proxy_arp", "1")
    _write_sysctl(f"ipv4/neigh/{host_if}/proxy_delay", "0")
    _write_sysctl(f"ipv4/conf/{host_if}/forwarding", "1")
    if ipv6:
        _write_sysctl(f"ipv6/conf/{host_if}/proxy_ndp", "1")
        _write_sysctl(f"ipv6/conf/{host_if}/forwarding", "1")


def _create_link_nl(*, netns: str, ifname: str, host_if: str, mtu: int, pod_mac: str) -> None:
    """IPv4 only: one rtnetlink request (veth, peer in ``netns``, host end up)."""
    fd = os.open(netns, os.O_RDONLY)
    try:
        with netlink.Netlink() as nl:
            for attempt in (1, 2):
                try:
                    nl.add_veth(
                        name=host_if, mac=HOST_MAC, mtu=mtu, peer=ifname, peer_mac=pod_mac,
                        peer_netns_fd=fd,
                    )  # fmt: skip
                    return
                except netlink.NetlinkError as exc:
                    if exc.errno != errno.EEXIST or attempt == 2:
                        raise DataplaneError(f"creating veth {host_if}: {exc.strerror}") from exc
                delete_link(host_if)  # a stale veth from an earlier sandbox of this pod
    finally:
        os.close(fd)


def _create_link_ip(*, netns: str, ifname: str, host_if: str, mtu: int, pod_mac: str) -> None:
    """With IPv6 (addrgenmode, the host link-local): ``ip -batch``."""
    host = [
        f"link add {host_if} mtu {mtu} address {HOST_MAC} type veth "
        f"peer name {ifname} address {pod_mac} mtu {mtu} netns {netns}",
    ]
    host += [
        f"link set {host_if} addrgenmode none",
        f"addr add {HOST_LINK_LOCAL}/64 dev {host_if} scope link nodad",
        f"link set {host_if} up",
    ]
    try:
        ip_batch(host)
    except DataplaneError as exc:
        if "File exists" not in str(exc):
            raise
        delete_link(host_if)  # a stale veth from an earlier sandbox of this pod
        ip_batch(host)


def add_host_routes(*, host_if: str, ipv4: list[str], ipv6: list[str]) -> None:
    # replace, not add: the policy agent may have programmed the same route already
    lines = [f"route replace {ip}/32 dev {host_if} scope link proto {ROUTE_PROTO}" for ip in ipv4]
    lines += [f"route replace {ip}/128 dev {host_if} proto {ROUTE_PROTO}" for ip in ipv6]
    if lines:
        ip_batch(lines)


def configure_pod(*, netns: str, ifname: str, ipv4: list[str], ipv6: list[str]) -> None:
    """Addresses, link up, the on-link gateway and default routes inside the pod."""
    pod = [f"addr add {ip}/32 dev {ifname}" for ip in ipv4]
    pod += [f"addr add {ip}/128 dev {ifname} nodad" for ip in ipv6]
    pod.append(f"link set {ifname} up")
    if ipv4:
        pod += [
            f"route add {GATEWAY_V4} dev {ifname} scope link",
            f"route add default via {GATEWAY_V4} dev {ifname}",
        ]
    if ipv6:
        pod.append(f"route add ::/0 via {HOST_LINK_LOCAL} dev {ifname}")
    ip_batch(pod, netns=netns)


def configure(*, netns: str, ifname: str, host_if: str, ipv4: list[str], ipv6: list[str]) -> None:
    """Host routes and the pod side: rtnetlink for IPv4 only, else two concurrent ``ip -batch``
    processes (one per namespace)."""
    if not ipv6:
        try:
            _configure_nl(netns=netns, ifname=ifname, host_if=host_if, ipv4=ipv4)
        except netlink.NetlinkError as exc:
            raise DataplaneError(f"configuring {host_if}/{ifname}: {exc.strerror}") from exc
        return
    host = Job(lambda: add_host_routes(host_if=host_if, ipv4=ipv4, ipv6=ipv6))
    try:
        configure_pod(netns=netns, ifname=ifname, ipv4=ipv4, ipv6=ipv6)
    finally:
        host.wait()


def _configure_nl(*, netns: str, ifname: str, host_if: str, ipv4: list[str]) -> None:
    index = link_index(host_if)
    if index is None:
        raise DataplaneError(f"host interface {host_if} does not exist")
    with netlink.Netlink() as nl:
        for ip in ipv4:
            # replace: the policy agent may already have programmed this same route for the
            # endpoint (it owns proto-80 routes on cali* devices too)
            nl.add_route4(index, ip, 32, proto=int(ROUTE_PROTO), replace=True)
    pod, pod_index = netlink.in_netns(netns, ifname)
    with pod:
        for ip in ipv4:
            pod.add_addr4(pod_index, ip)
        pod.link_up(pod_index)
        if ipv4:
            pod.add_route4(pod_index, GATEWAY_V4, 32)
            pod.add_route4(pod_index, "0.0.0.0", 0, gateway=GATEWAY_V4)


def setup(
    *, netns: str, ifname: str, host_if: str, mtu: int, ipv4: list[str], ipv6: list[str]
) -> str:
    """Build the pod's network in one go; returns the pod-side MAC. On failure, nothing is left."""
    pod_mac = random_mac()
    create_link(
        netns=netns, ifname=ifname, host_if=host_if, mtu=mtu, pod_mac=pod_mac, ipv6=bool(ipv6)
    )
    try:
        configure(netns=netns, ifname=ifname, host_if=host_if, ipv4=ipv4, ipv6=ipv6)
    except DataplaneError:
        delete_link(host_if)
        raise
    return pod_mac


def delete_link(host_if: str) -> bool:
    """Delete the host veth (its pod peer and routes go with it). False if it did not exist."""
    try:
        run(["ip", "link", "del", host_if], timeout=30)
    except CmdError as exc:
        if "Cannot find device" in exc.stderr or "does not exist" in exc.stderr:
            return False
        raise DataplaneError(exc.stderr) from exc
    return True


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
