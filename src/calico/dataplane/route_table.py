"""RouteTable: the driver for workload routes (``<ip> dev cali... proto 80 scope link``).

Owns every route with protocol 80 on a ``cali*`` device. Two modes, one ``ip -batch`` each:

* resync (first apply, periodic refresh, after an error): mark-and-sweep - read back with
  ``ip -j route show proto 80``, add what is missing, delete what no one wants;
* incremental: only the interfaces whose desired routes changed since the last apply.

A route whose interface does not exist yet is retried (``pending_ifaces``) by the next resync.
"""

from __future__ import annotations

import ipaddress
import json
import logging

from calico.lib import cmd

logger = logging.getLogger(__name__)

PROTO = "80"
IFACE_PREFIX = "cali"


class RouteTable:
    def __init__(self, *, netns: str | None = None) -> None:
        self._netns = netns
        self._desired: dict[str, tuple[str, ...]] = {}
        self._applied: dict[str, tuple[str, ...]] = {}
        self._dirty_ifaces: set[str] = set()
        self._resync = True
        self.pending_ifaces: set[str] = set()

    @property
    def dirty(self) -> bool:
        return self._resync or bool(self._dirty_ifaces)

    def set_routes(self, iface: str, nets: tuple[str, ...]) -> None:
        cidrs = tuple(sorted(str(ipaddress.ip_network(n, strict=False)) for n in nets))
        if cidrs:
            self._desired[iface] = cidrs
        else:
            self._desired.pop(iface, None)
        if self._applied.get(iface, ()) != cidrs:
            self._dirty_ifaces.add(iface)
        else:
            self._dirty_ifaces.discard(iface)

    def queue_resync(self) -> None:
        self._resync = True

    def _ip(self, args: list[str], *, input: str | None = None) -> str:
        return cmd.run(cmd.netns_argv(self._netns, ["ip", *args]), input=input).stdout

    def _links(self) -> set[str]:
        return {link["ifname"] for link in json.loads(self._ip(["-j", "link", "show"]) or "[]")}

    def _current(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for fam in ("-4", "-6"):
            raw = self._ip(["-j", fam, "route", "show", "proto", PROTO]) or "[]"
            for route in json.loads(raw):
                dev = route.get("dev", "")
                if not dev.startswith(IFACE_PREFIX):
                    continue
                dst = route.get("dst", "")
                if "/" not in dst:
                    dst += "/128" if ":" in dst else "/32"
                out.add((dev, dst))
        return out

    def apply(self) -> None:
        if self._resync:
            self._apply_resync()
        elif self._dirty_ifaces:
            self._apply_incremental()

    def _apply_resync(self) -> None:
        links = self._links()
        current = self._current()
        desired = {(i, n) for i, nets in self._desired.items() if i in links for n in nets}
        self.pending_ifaces = {i for i in self._desired if i not in links}
        cmds = [
            f"route del {dst} dev {dev} proto {PROTO}" for dev, dst in sorted(current - desired)
        ]
        cmds += [
            f"route replace {dst} dev {dev} proto {PROTO} scope link"
            for dev, dst in sorted(desired - current)
        ]
        self._resync = False
        self._dirty_ifaces.clear()
        self._applied = dict(self._desired)
        self._batch(cmds)

    def _apply_incremental(self) -> None:
        cmds: list[str] = []
        for iface in sorted(self._dirty_ifaces):
            old, new = set(self._applied.get(iface, ())), set(self._desired.get(iface, ()))
            cmds += [f"route del {dst} dev {iface} proto {PROTO}" for dst in sorted(old - new)]
            cmds += [
                f"route replace {dst} dev {iface} proto {PROTO} scope link" for dst in sorted(new)
            ]
            if new:
                self._applied[iface] = tuple(sorted(new))
            else:
                self._applied.pop(iface, None)
        self._dirty_ifaces.clear()
        self._batch(cmds)

    def _batch(self, cmds: list[str]) -> None:
        if not cmds:
            return
        try:
            self._ip(["-force", "-batch", "-"], input="\n".join(cmds) + "\n")
        except cmd.CmdError as exc:  # e.g. an interface not there (yet): resync soon
            logger.info("route update partly failed (will retry): %s", exc)
            self.pending_ifaces.add("")
