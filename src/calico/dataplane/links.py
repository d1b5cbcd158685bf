"""Links: the driver for the tunnel devices ``vxlan.calico`` and ``tunl0`` (ours by name).

Managers say which devices they want (``set_device``); ``apply()`` reads every link once
(``ip -d -j addr show``), then per device, in one ``ip -batch``: creates it, re-creates it when a
parameter that cannot change in place differs (VXLAN VNI, port, local address, parent, learning),
sets MAC, MTU and up, and marks-and-sweeps its IPv4 addresses (every address on our device is
ours). An unwanted ``vxlan.calico`` is deleted; an unwanted ``tunl0`` (the kernel's ipip fallback
device, which cannot be deleted) loses its addresses and goes down.

A device that cannot be programmed becomes a *problem* (``problems[name]``: the kernel's words),
not a dataplane failure: everything else keeps being programmed, and the device is tried again on
the next change or resync. ``apply()`` returns which devices now exist, and which were (re)created
or deleted, so the route and neighbour drivers resync or forget them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from calico.dataplane import iproute
from calico.dpapi import messages as m
from calico.lib import cmd

logger = logging.getLogger(__name__)

OVERHEAD = {"vxlan": 50, "ipip": 20}  # outer headers: MTU = parent's - overhead when not set
DEFAULT_PARENT_MTU = 1500
OWNED = (m.VXLAN_DEVICE, m.IPIP_DEVICE)


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    kind: str  # "vxlan" | "ipip"
    mtu: int = 0  # 0: the parent interface's MTU - OVERHEAD[kind]
    addrs: tuple[str, ...] = ()  # "10.65.1.0/32"
    local: str | None = None  # this node's address: VXLAN source; its interface is the parent
    mac: str | None = None
    vni: int = 4096
    port: int = 4789


@dataclass
class Changes:
    present: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)  # created or re-created: routes/neigh gone
    deleted: set[str] = field(default_factory=set)


class Links:
    def __init__(self, *, runner: iproute.Runner | None = None) -> None:
        self._runner: iproute.Runner = runner or iproute.IPRoute2()
        self._desired: dict[str, Device] = {}
        self._dirty = True
        self.present: set[str] = set()
        self.problems: dict[str, str] = {}

    @property
    def dirty(self) -> bool:
        return self._dirty

    def set_device(self, name: str, device: Device | None) -> None:
        if self._desired.get(name) == device:
            return
        if device is None:
            del self._desired[name]
        else:
            self._desired[name] = device
        self._dirty = True

    def queue_resync(self) -> None:
        self._dirty = True

    def apply(self) -> Changes:
        changes = Changes()
        if not self._dirty:
            changes.present = set(self.present)
            return changes
        self._dirty = False
        links = {
            x["ifname"]: x
            for x in iproute.read_json(self._runner, ["ip", "-d", "-j", "addr", "show"])
        }
        for name in OWNED:
            want, have = self._desired.get(name), links.get(name)
            try:
                if want is None:
                    self.problems.pop(name, None)
                    if have is not None and self._remove(name, have):
                        changes.deleted.add(name)
                    continue
                if self._ensure(want, have, links):
                    changes.created.add(name)
                changes.present.add(name)
                if self.problems.pop(name, None):
                    logger.info("%s is programmed now", name)
            except cmd.CmdError as exc:
                self._problem(name, exc.stderr or str(exc))
        self.present = set(changes.present)
        return changes

    def _problem(self, name: str, text: str) -> None:
        if self.problems.get(name) != text:
            logger.error("cannot program %s: %s", name, text)
        self.problems[name] = text

    # ---- one device ---------------------------------------------------------------------------

    def _remove(self, name: str, have: dict[str, Any]) -> bool:
        if name == m.VXLAN_DEVICE:
            logger.info("deleting %s: no pool uses it", name)
            iproute.batch(self._runner, "ip", [f"link del {name}"])
            return True
        if _v4_addrs(have) or "UP" in have.get("flags", []):
            logger.info("taking down %s: no pool uses it", name)
            iproute.batch(self._runner, "ip", [f"addr flush dev {name}", f"link set {name} down"])
        return False

    def _ensure(self, want: Device, have: dict[str, Any] | None, links: dict[str, Any]) -> bool:
        """Make ``want`` so; True when the device was (re)created."""
        parent = _holding(links, want.local) if want.local else None
        if want.kind == "vxlan" and parent is None:
            raise cmd.CmdError([], 1, f"no interface holds this node's address {want.local}")
        cmds: list[str] = []
        created = False
        if have is not None and want.kind == "vxlan" and _vxlan_differs(want, have, parent):
            cmds.append(f"link del {want.name}")
            have = None
        if have is None:
            created = True
            if want.kind == "vxlan":
                assert parent is not None
                cmds.append(
                    f"link add name {want.name} type vxlan id {want.vni} local {want.local}"
                    f" dev {parent['ifname']} dstport {want.port} nolearning"
                )
            else:
                self._add_ipip(want.name)
        mtu = want.mtu or int((parent or {}).get("mtu", DEFAULT_PARENT_MTU)) - OVERHEAD[want.kind]
        sets = []
        if want.mac and (have is None or have.get("address", "").lower() != want.mac):
            sets.append(f"address {want.mac}")
        if have is None or have.get("mtu") != mtu:
            sets.append(f"mtu {mtu}")
        if have is None or "UP" not in have.get("flags", []):
            sets.append("up")
        if sets:
            cmds.append(f"link set {want.name} {' '.join(sets)}")
        current = _v4_addrs(have) if have is not None else set()
        cmds += [f"addr del {a} dev {want.name}" for a in sorted(current - set(want.addrs))]
        cmds += [f"addr add {a} dev {want.name}" for a in sorted(set(want.addrs) - current)]
        if cmds:
            logger.info("programming %s: %s", want.name, "; ".join(cmds))
        iproute.batch(self._runner, "ip", cmds)
        return created

    def _add_ipip(self, name: str) -> None:
        """``tunl0`` appears when the ipip module loads; adding it loads the module (or fails
        with "Unknown device type" on a kernel without it). It may exist already."""
        try:
            self._runner.run(["ip", "link", "add", "name", name, "type", "ipip"])
        except cmd.CmdError as exc:
            if "File exists" not in exc.stderr:
                raise


def _v4_addrs(link: dict[str, Any]) -> set[str]:
    return {
        f"{a['local']}/{a['prefixlen']}"
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    }


def _holding(links: dict[str, Any], addr: str | None) -> dict[str, Any] | None:
    for link in links.values():
        if link["ifname"] in OWNED:
            continue
        if any(a.get("local") == addr for a in link.get("addr_info", [])):
            return dict(link)
    return None


def _vxlan_differs(want: Device, have: dict[str, Any], parent: dict[str, Any] | None) -> bool:
    info = have.get("linkinfo", {})
    data = info.get("info_data", {})
    return (
        info.get("info_kind") != "vxlan"
        or data.get("id") != want.vni
        or data.get("port") != want.port
        or data.get("local") != want.local
        or data.get("learning", True)
        or (parent is not None and data.get("link") != parent["ifname"])
    )
