"""Neighbors: the driver for ``vxlan.calico``'s static ARP and FDB entries (ours: the device is).

Per remote VTEP: a permanent neighbour entry (its tunnel address -> its MAC) and an FDB entry
(its MAC -> its node address), so the kernel never has to learn or flood. As the route table:

* resync (first apply, periodic refresh, device (re)created, a second after an error):
  mark-and-sweep - read back ``ip -j neigh show dev vxlan.calico`` and ``bridge -j fdb show
  dev vxlan.calico``, replace what is missing or different, delete permanent entries no one wants;
* incremental: only the entries that changed, one ``ip -batch`` and one ``bridge -batch``.

Nothing is done while the device does not exist (``device_present`` False): its entries went with
it, and the next apply after it is created resyncs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from calico.dataplane import iproute
from calico.dpapi import messages as m
from calico.lib import cmd

logger = logging.getLogger(__name__)

DEVICE = m.VXLAN_DEVICE


class Neighbors:
    def __init__(self, *, runner: iproute.Runner | None = None) -> None:
        self._runner: iproute.Runner = runner or iproute.IPRoute2()
        self._arp: dict[str, str] = {}  # tunnel address -> MAC
        self._fdb: dict[str, str] = {}  # MAC -> node address
        self._applied_arp: dict[str, str] = {}
        self._applied_fdb: dict[str, str] = {}
        self._resync = True
        self.device_present = False
        self.pending = False  # the last apply partly failed: the loop queues a resync soon

    @property
    def dirty(self) -> bool:
        if not self.device_present:
            return False
        return self._resync or self._arp != self._applied_arp or self._fdb != self._applied_fdb

    def set_entries(self, arp: dict[str, str], fdb: dict[str, str]) -> None:
        self._arp = {ip: mac.lower() for ip, mac in arp.items()}
        self._fdb = {mac.lower(): dst for mac, dst in fdb.items()}

    def queue_resync(self) -> None:
        self._resync = True

    def apply(self) -> None:
        if not self.dirty:
            return
        if self._resync:
            self._applied_arp, self._applied_fdb = self._read()
            self._resync = False
        ip_cmds = _diff(self._applied_arp, self._arp, _arp_cmd)
        bridge_cmds = _diff(self._applied_fdb, self._fdb, _fdb_cmd)
        self._applied_arp, self._applied_fdb = dict(self._arp), dict(self._fdb)
        try:
            iproute.batch(self._runner, "ip", ip_cmds)
            iproute.batch(self._runner, "bridge", bridge_cmds)
            self.pending = False
        except cmd.CmdError as exc:  # not dirty now: no busy loop; the loop's retry timer resyncs
            logger.info("neighbour update partly failed (will resync): %s", exc)
            self.pending = True

    def _read(self) -> tuple[dict[str, str], dict[str, str]]:
        arp = {
            n["dst"]: str(n.get("lladdr", "")).lower()
            for n in iproute.read_json(self._runner, ["ip", "-j", "neigh", "show", "dev", DEVICE])
            if "PERMANENT" in n.get("state", []) and "dst" in n
        }
        fdb = {
            str(f["mac"]).lower(): f["dst"]
            for f in iproute.read_json(self._runner, ["bridge", "-j", "fdb", "show", "dev", DEVICE])
            if f.get("state") == "permanent" and "dst" in f and "mac" in f
        }
        return arp, fdb


def _arp_cmd(verb: str, ip: str, mac: str) -> str:
    if verb == "del":
        return f"neigh del {ip} dev {DEVICE}"
    return f"neigh replace {ip} lladdr {mac} dev {DEVICE} nud permanent"


def _fdb_cmd(verb: str, mac: str, dst: str) -> str:
    if verb == "del":
        return f"fdb del {mac} dev {DEVICE} dst {dst} self"
    return f"fdb replace {mac} dev {DEVICE} dst {dst} self permanent"


def _diff(
    have: dict[str, str], want: dict[str, str], render: Callable[[str, str, str], str]
) -> list[str]:
    out = [render("del", k, have[k]) for k in sorted(set(have) - set(want))]
    out += [render("replace", k, v) for k, v in sorted(want.items()) if have.get(k) != v]
    return out
