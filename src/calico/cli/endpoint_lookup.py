"""Which endpoint a user means (``NS/POD``, a WorkloadEndpoint, a HostEndpoint or an IP), from
the datastore: its kind and name as the agent knows it, its node and its addresses.

Resolution order for an argument ``X``:

* ``NS/NAME``: the WorkloadEndpoint of pod ``NAME`` in namespace ``NS`` (its ``eth0`` one if the
  pod has several), else the WorkloadEndpoint named ``NAME`` in ``NS``;
* ``NAME``: the HostEndpoint ``NAME``, else the WorkloadEndpoint ``NAME`` in ``default``;
* an IP address: the WorkloadEndpoint holding it in ``ipNetworks``, else the HostEndpoint with it
  in ``expectedIPs``.

Errors name what was not found: an unknown pod or endpoint, a pod on no node (a WorkloadEndpoint
without ``spec.node``), an IP in no IP pool, an IP in a pool that no endpoint has.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]
Lister = Callable[[str, str | None], list[Resource]]  # (kind, namespace or None: all) -> items


class EndpointNotFound(ValueError):
    """The argument names no endpoint; the message says what was not found."""


@dataclass(frozen=True)
class Endpoint:
    arg: str  # as the user wrote it
    kind: str  # WorkloadEndpoint | HostEndpoint
    name: str  # as the agent knows it: "<ns>/<name>" or "<name>"
    node: str
    addresses: tuple[str, ...] = field(default=())  # without prefix, v4 first

    def address(self, family: int) -> str | None:
        for a in self.addresses:
            if ipaddress.ip_address(a).version == family:
                return a
        return None


def _addresses(cidrs: list[Any]) -> tuple[str, ...]:
    out = []
    for c in cidrs:
        try:
            out.append(str(ipaddress.ip_interface(str(c)).ip))
        except ValueError:
            continue
    return tuple(sorted(out, key=lambda a: (ipaddress.ip_address(a).version, a)))


def _wep(arg: str, wep: Resource) -> Endpoint:
    meta, spec = wep["metadata"], wep.get("spec") or {}
    node = str(spec.get("node") or "")
    what = f"pod {spec['pod']}" if spec.get("pod") else f"WorkloadEndpoint {meta['name']}"
    if not node:
        raise EndpointNotFound(
            f"{arg}: {what} in namespace {meta.get('namespace')} is on no node "
            "(its WorkloadEndpoint has no spec.node)"
        )
    return Endpoint(arg, "WorkloadEndpoint", f"{meta.get('namespace')}/{meta['name']}", node,
                    _addresses(spec.get("ipNetworks") or []))  # fmt: skip


def _hep(arg: str, hep: Resource) -> Endpoint:
    spec = hep.get("spec") or {}
    node = str(spec.get("node") or "")
    if not node:
        raise EndpointNotFound(f"{arg}: HostEndpoint {hep['metadata']['name']} has no spec.node")
    return Endpoint(arg, "HostEndpoint", hep["metadata"]["name"], node,
                    _addresses(spec.get("expectedIPs") or []))  # fmt: skip


def _pod_wep(weps: list[Resource], pod: str) -> Resource | None:
    mine = [w for w in weps if (w.get("spec") or {}).get("pod") == pod]
    mine.sort(
        key=lambda w: ((w.get("spec") or {}).get("endpoint") != "eth0", w["metadata"]["name"])
    )
    return mine[0] if mine else None


def _by_ip(arg: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, lister: Lister) -> Endpoint:
    for wep in lister("WorkloadEndpoint", None):
        if str(ip) in _addresses((wep.get("spec") or {}).get("ipNetworks") or []):
            return _wep(arg, wep)
    for hep in lister("HostEndpoint", None):
        if str(ip) in _addresses((hep.get("spec") or {}).get("expectedIPs") or []):
            return _hep(arg, hep)
    pools = [p for p in lister("IPPool", None) if _in_pool(ip, p)]
    if not pools:
        raise EndpointNotFound(f"{arg}: IP {ip} is in no IP pool and no endpoint has it")
    raise EndpointNotFound(
        f"{arg}: no endpoint has IP {ip} (it is in IP pool {pools[0]['metadata']['name']}: "
        "not allocated, or its pod is gone)"
    )


def _in_pool(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, pool: Resource) -> bool:
    try:
        net = ipaddress.ip_network(str((pool.get("spec") or {}).get("cidr")), strict=False)
    except ValueError:
        return False
    return net.version == ip.version and ip in net


def lookup(arg: str, lister: Lister) -> Endpoint:
    try:
        ip = ipaddress.ip_address(arg)
    except ValueError:
        ip = None
    if ip is not None:
        return _by_ip(arg, ip, lister)
    if "/" in arg:
        ns, _, name = arg.partition("/")
        if not ns or not name:
            raise EndpointNotFound(f"{arg}: expected NAMESPACE/POD, an endpoint name or an IP")
        weps = lister("WorkloadEndpoint", ns)
        found = _pod_wep(weps, name) or next(
            (w for w in weps if w["metadata"]["name"] == name), None
        )
        if found is None:
            raise EndpointNotFound(
                f"{arg}: no pod {name} with a network endpoint in namespace {ns} "
                f"(and no WorkloadEndpoint {name} there)"
            )
        return _wep(arg, found)
    hep = next((h for h in lister("HostEndpoint", None) if h["metadata"]["name"] == arg), None)
    if hep is not None:
        return _hep(arg, hep)
    wep = next((w for w in lister("WorkloadEndpoint", "default") if w["metadata"]["name"] == arg),
               None)  # fmt: skip
    if wep is not None:
        return _wep(arg, wep)
    raise EndpointNotFound(
        f"{arg}: no HostEndpoint or WorkloadEndpoint (namespace default) named {arg}; "
        "give NAMESPACE/POD for a pod"
    )
