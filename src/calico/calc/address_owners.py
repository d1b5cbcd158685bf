"""Who holds an address: the workload or host endpoint with that address, else the network set
whose nets contain it (pure; for flow logs, which name both ends of a flow).

Asked rarely (once per flow-log interval, for the addresses seen in it), so it scans the graph's
items instead of keeping an address index: no memory per endpoint, O(cluster) per call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.calc import validation

# Calico's flow-log endpoint types.
WEP, HEP, NETSET = "wep", "hep", "ns"


@dataclass(frozen=True, slots=True)
class AddressOwner:
    type: str  # WEP | HEP | NETSET
    namespace: str | None
    name: str  # a workload endpoint's pod (else its workload or resource name)
    labels: tuple[tuple[str, str], ...]


def owners(
    items: Mapping[str, validation.Item],
    ips: Iterable[str],
    resource: Callable[[str], Any | None],
) -> dict[str, AddressOwner]:
    """``ips`` -> their owners (missing: no resource holds it). ``resource(item_id)`` gives an
    endpoint's stored resource (for its pod name)."""
    wanted = set(ips)
    found: dict[str, AddressOwner] = {}
    sets: list[validation.Item] = []
    for item in items.values():
        if item.kind == validation.NETSET:
            sets.append(item)
            continue
        for net in item.nets:
            addr = net.partition("/")[0]
            if addr in wanted and addr not in found:
                found[addr] = _endpoint(item, resource(item.id))
    rest = wanted - set(found)
    if rest and sets:
        parsed = {ip: ipaddress.ip_address(ip) for ip in rest}
        for item in sorted(sets, key=lambda i: i.id):
            nets = [ipaddress.ip_network(n, strict=False) for n in item.nets]
            for ip, address in parsed.items():
                if ip not in found and any(
                    address.version == n.version and address in n for n in nets
                ):
                    found[ip] = _netset(item)
    return found


def _endpoint(item: validation.Item, res: Any | None) -> AddressOwner:
    kind, _, ident = item.id.partition(":")
    ns, _, name = ident.rpartition("/")
    spec = (res or {}).get("spec") or {} if isinstance(res, dict) else {}
    if kind == validation.WEP:
        name = spec.get("pod") or spec.get("workload") or name
    return AddressOwner(WEP if kind == validation.WEP else HEP, ns or None, name, item.labels)


def _netset(item: validation.Item) -> AddressOwner:
    _, _, ident = item.id.partition(":")
    ns, _, name = ident.rpartition("/")
    return AddressOwner(NETSET, ns or None, name, item.labels)
