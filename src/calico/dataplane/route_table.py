"""RouteTable: the driver for the agent's routes, all ``proto 80``:

* workload routes ``<ip> dev cali... proto 80 scope link``;
* encapsulated routes ``<cidr> via <gateway> dev vxlan.calico|tunl0 proto 80 onlink``.

Owns every route with protocol 80 on a ``cali*`` device or on a tunnel device (``OWNED_DEVICES``).
Two modes, one ``ip -batch`` each:

* resync (first apply, periodic refresh, after an error, after a tunnel device was re-created):
  mark-and-sweep - read back with ``ip -j route show proto 80``, add what is missing or
  different, delete what no one wants;
* incremental: only the routes that changed since the last apply.

A route whose interface does not exist yet is retried (``pending_ifaces``) by the next resync.
``forget_iface`` drops what we think a deleted device had (the kernel removed its routes with it).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

from calico.dataplane import iproute
from calico.dpapi import messages as m
from calico.lib import cmd

logger = logging.getLogger(__name__)

PROTO = "80"
IFACE_PREFIX = "cali"
OWNED_DEVICES = (m.VXLAN_DEVICE, m.IPIP_DEVICE)

Routes = dict[str, str | None]  # dst CIDR -> gateway (None: a scope-link route)


def owned(dev: str) -> bool:
    return dev.startswith(IFACE_PREFIX) or dev in OWNED_DEVICES


def _route_cmd(verb: str, dev: str, dst: str, gw: str | None) -> str:
    if verb == "del":
        return f"route del {dst} dev {dev} proto {PROTO}"
    if gw is None:
        return f"route replace {dst} dev {dev} proto {PROTO} scope link"
    return f"route replace {dst} via {gw} dev {dev} proto {PROTO} onlink"


class RouteTable:
    def __init__(self, *, netns: str | None = None, runner: iproute.Runner | None = None) -> None:
        self._runner: iproute.Runner = runner or iproute.IPRoute2(netns)
        self._desired: dict[str, Routes] = {}
        self._applied: dict[str, Routes] = {}
        self._dirty: set[tuple[str, str]] = set()  # (iface, dst) that may differ from applied
        self._resync = True
        self.pending_ifaces: set[str] = set()

    @property
    def dirty(self) -> bool:
        return self._resync or bool(self._dirty)

    def set_routes(self, iface: str, nets: tuple[str, ...]) -> None:
        """Scope-link routes to ``nets`` on ``iface`` (a workload's addresses)."""
        self._set(iface, {str(ipaddress.ip_network(n, strict=False)): None for n in nets})

    def set_gateway_routes(self, iface: str, routes: Mapping[str, str]) -> None:
        """``dst via gateway onlink`` routes on ``iface`` (a tunnel device)."""
        self._set(
            iface, {str(ipaddress.ip_network(d, strict=False)): gw for d, gw in routes.items()}
        )

    def set_gateway_route(self, iface: str, dst: str, gateway: str | None) -> None:
        """One route on ``iface`` (``None``: no route to ``dst`` there): a change costs O(1)."""
        routes = self._desired.setdefault(iface, {})
        if gateway is None:
            routes.pop(dst, None)
        else:
            routes[dst] = gateway
        if not routes:
            del self._desired[iface]
        self._mark(iface, dst)

    def _set(self, iface: str, routes: Routes) -> None:
        old = self._desired.get(iface, {})
        if routes:
            self._desired[iface] = routes
        else:
            self._desired.pop(iface, None)
        for dst in set(old) | set(routes):
            self._mark(iface, dst)

    def _mark(self, iface: str, dst: str) -> None:
        want, applied = self._desired.get(iface, {}), self._applied.get(iface, {})
        if (dst in want) != (dst in applied) or want.get(dst) != applied.get(dst):
            self._dirty.add((iface, dst))
        else:
            self._dirty.discard((iface, dst))

    def forget_iface(self, iface: str) -> None:
        """The device is gone and its routes with it: nothing to delete."""
        self._applied.pop(iface, None)
        want = self._desired.get(iface, {})
        self._dirty = {(i, d) for i, d in self._dirty if i != iface or d in want}

    def queue_resync(self) -> None:
        self._resync = True

    def _links(self) -> set[str]:
        return {
            link["ifname"] for link in iproute.read_json(self._runner, ["ip", "-j", "link", "show"])
        }

    def _current(self) -> dict[tuple[str, str], str | None]:
        out: dict[tuple[str, str], str | None] = {}
        for fam in ("-4", "-6"):
            for route in iproute.read_json(
                self._runner, ["ip", "-j", fam, "route", "show", "proto", PROTO]
            ):
                dev = route.get("dev", "")
                if not owned(dev):
                    continue
                dst = route.get("dst", "")
                if "/" not in dst:
                    dst += "/128" if ":" in dst else "/32"
                out[(dev, dst)] = route.get("gateway")
        return out

    def apply(self) -> None:
        if self._resync:
            self._apply_resync()
        elif self._dirty:
            self._apply_incremental()

    def _apply_resync(self) -> None:
        links = self._links()
        current = self._current()
        desired = {
            (i, dst): gw
            for i, routes in self._desired.items()
            if i in links
            for dst, gw in routes.items()
        }
        self.pending_ifaces = {i for i in self._desired if i not in links}
        cmds = [
            _route_cmd("del", dev, dst, None) for dev, dst in sorted(set(current) - set(desired))
        ]
        cmds += [
            _route_cmd("replace", dev, dst, gw)
            for (dev, dst), gw in sorted(desired.items())
            if (dev, dst) not in current or current[(dev, dst)] != gw
        ]
        self._resync = False
        self._dirty.clear()
        self._applied = {i: dict(r) for i, r in self._desired.items()}
        self._batch(cmds)

    def _apply_incremental(self) -> None:
        cmds: list[str] = []
        for iface, dst in sorted(self._dirty):
            want = self._desired.get(iface, {})
            applied = self._applied.setdefault(iface, {})
            if dst in want:
                cmds.append(_route_cmd("replace", iface, dst, want[dst]))
                applied[dst] = want[dst]
            elif dst in applied:
                cmds.append(_route_cmd("del", iface, dst, None))
                del applied[dst]
            if not applied:
                del self._applied[iface]
        self._dirty.clear()
        self._batch(cmds)

    def _batch(self, cmds: list[str]) -> None:
        try:
            iproute.batch(self._runner, "ip", cmds)
        except cmd.CmdError as exc:  # e.g. an interface not there (yet): resync soon
            logger.info("route update partly failed (will retry): %s", exc)
            self.pending_ifaces.add("")
