"""CNI result JSON for each spec version, and reading a prevResult back.

* 0.1.0 / 0.2.0: ``{"ip4": {"ip", "gateway", "routes"}, "ip6": {...}, "dns"}``
* 0.3.x / 0.4.0: ``interfaces`` + ``ips`` (with ``"version"``) + ``routes`` + ``dns``
* 1.0.0: as 0.4.0 without ``ips[].version``

Internally a result is :class:`Result` (interfaces, addresses with the interface index, routes).
"""

from __future__ import annotations

from typing import Any


class Result:
    def __init__(self) -> None:
        self.interfaces: list[dict[str, str]] = []
        self.ips: list[
            dict[str, Any]
        ] = []  # {"address": "a/len", "gateway"?: str, "interface"?: int}
        self.routes: list[dict[str, str]] = []
        self.dns: dict[str, Any] = {}

    def add_interface(self, name: str, mac: str = "", sandbox: str = "") -> int:
        iface = {"name": name}
        if mac:
            iface["mac"] = mac
        if sandbox:
            iface["sandbox"] = sandbox
        self.interfaces.append(iface)
        return len(self.interfaces) - 1

    def addresses(self) -> list[str]:
        return [str(ip["address"]) for ip in self.ips]

    def render(self, version: str) -> dict[str, Any]:
        if version in ("0.1.0", "0.2.0"):
            return self._render_legacy(version)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = self.interfaces
        ips = []
        for ip in self.ips:
            entry = dict(ip)
            if version != "1.0.0":
                entry["version"] = "6" if ":" in str(ip["address"]) else "4"
            ips.append(entry)
        out["ips"] = ips
        if self.routes:
            out["routes"] = self.routes
        if self.dns:
            out["dns"] = self.dns
        return out

    def _render_legacy(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        for ip in self.ips:
            fam = "ip6" if ":" in str(ip["address"]) else "ip4"
            if fam in out:
                continue
            entry: dict[str, Any] = {"ip": ip["address"]}
            if ip.get("gateway"):
                entry["gateway"] = ip["gateway"]
            routes = [r for r in self.routes if (":" in r["dst"]) == (fam == "ip6")]
            if routes:
                entry["routes"] = routes
            out[fam] = entry
        if self.dns:
            out["dns"] = self.dns
        return out

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Result:
        """Read a prevResult (or an IPAM plugin's result) of any supported version."""
        res = cls()
        if not raw:
            return res
        res.interfaces = [dict(i) for i in raw.get("interfaces") or []]
        for ip in raw.get("ips") or []:
            entry = {k: v for k, v in ip.items() if k != "version"}
            res.ips.append(entry)
        for fam in ("ip4", "ip6"):
            legacy = raw.get(fam)
            if legacy:
                res.ips.append({"address": legacy["ip"]})
                res.routes += list(legacy.get("routes") or [])
        res.routes += list(raw.get("routes") or [])
        res.dns = dict(raw.get("dns") or {})
        return res
