"""How calicoctl prints resources: tables (``ps``, ``wide``, ``custom-columns=``), YAML and JSON.

Tables use calicoctl's columns per kind (IPPool: NAME CIDR SELECTOR; ``-o wide`` adds NAT, IPIPMODE,
VXLANMODE, DISABLED; Node wide: NAME ASN IPV4 IPV6; policies wide: NAME TIER ORDER SELECTOR, as
calicoctl shows staged policies; Tier: NAME ORDER, wide adds DEFAULTACTION, ...), upper-case
headings and columns padded by three spaces as Go's tabwriter does. YAML and JSON print one
resource as itself, several as a ``List`` (``apiVersion: projectcalico.org/v3``, ``items``), and a
whole kind as ``<Kind>List``.
YAML keys are sorted, as calicoctl's JSON-to-YAML writer sorts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from calico.model import kinds

Resource = dict[str, Any]
Cell = Callable[[Resource], str]


def _get(obj: Resource, *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _s(*path: str, default: str = "") -> Cell:
    def cell(obj: Resource) -> str:
        v = _get(obj, *path)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return ",".join(str(x) for x in v)
        if isinstance(v, dict):
            return ",".join(f"{k}={val}" for k, val in sorted(v.items()))
        return str(v)

    return cell


def _bgp_peer_node(obj: Resource) -> str:
    spec = obj.get("spec") or {}
    return str(spec.get("node") or spec.get("nodeSelector") or "(global)")


def _node_asn(default_asn: Callable[[], str]) -> Cell:
    def cell(obj: Resource) -> str:
        bgp = _get(obj, "spec", "bgp")
        if not isinstance(bgp, dict):
            return ""
        if bgp.get("asNumber") is not None:
            return str(bgp["asNumber"])
        return f"({default_asn()})"

    return cell


def _wep_workload(obj: Resource) -> str:
    spec = obj.get("spec") or {}
    return str(spec.get("workload") or spec.get("pod") or "")


def _ip_nats(obj: Resource) -> str:
    nats = _get(obj, "spec", "ipNATs") or []
    return ",".join(f"{n.get('internalIP')}:{n.get('externalIP')}" for n in nats)


def columns(default_asn: Callable[[], str] = lambda: "64512") -> dict[str, dict[str, Cell]]:
    """Every kind's column name -> cell function (the ps and wide headings choose among them)."""
    name, ns = _s("metadata", "name"), _s("metadata", "namespace")
    policy = {
        "NAMESPACE": ns,
        "NAME": name,
        "TIER": _s("spec", "tier", default="default"),
        "ORDER": _s("spec", "order"),
        "SELECTOR": _s("spec", "selector"),
    }
    return {
        "IPPool": {"NAME": name, "CIDR": _s("spec", "cidr"), "NAT": _s("spec", "natOutgoing"),
                   "IPIPMODE": _s("spec", "ipipMode"), "VXLANMODE": _s("spec", "vxlanMode"),
                   "DISABLED": _s("spec", "disabled"), "SELECTOR": _s("spec", "nodeSelector")},
        "Node": {"NAME": name, "ASN": _node_asn(default_asn),
                 "IPV4": _s("spec", "bgp", "ipv4Address"),
                 "IPV6": _s("spec", "bgp", "ipv6Address")},
        "WorkloadEndpoint": {"NAMESPACE": ns, "NAME": name, "WORKLOAD": _wep_workload,
                             "NODE": _s("spec", "node"), "NETWORKS": _s("spec", "ipNetworks"),
                             "INTERFACE": _s("spec", "interfaceName"),
                             "PROFILES": _s("spec", "profiles"), "NATS": _ip_nats},
        "HostEndpoint": {"NAME": name, "NODE": _s("spec", "node"),
                         "INTERFACE": _s("spec", "interfaceName"),
                         "IPS": _s("spec", "expectedIPs"), "PROFILES": _s("spec", "profiles")},
        "Profile": {"NAME": name, "LABELS": _s("spec", "labelsToApply")},
        "NetworkPolicy": policy,
        "GlobalNetworkPolicy": policy,
        "StagedNetworkPolicy": policy,
        "StagedGlobalNetworkPolicy": policy,
        "StagedKubernetesNetworkPolicy": {"NAMESPACE": ns, "NAME": name,
                                          "ACTION": _s("spec", "stagedAction", default="Set")},
        "Tier": {"NAME": name, "ORDER": _s("spec", "order"),
                 "DEFAULTACTION": _s("spec", "defaultAction", default="Deny")},
        "GlobalNetworkSet": {"NAME": name, "NETS": _s("spec", "nets")},
        "NetworkSet": {"NAMESPACE": ns, "NAME": name, "NETS": _s("spec", "nets")},
        "BGPPeer": {"NAME": name, "PEERIP": _s("spec", "peerIP", default="(selector)"),
                    "NODE": _bgp_peer_node, "ASN": _s("spec", "asNumber")},
        "BGPConfiguration": {"NAME": name, "LOGSEVERITY": _s("spec", "logSeverityScreen"),
                             "MESHENABLED": _s("spec", "nodeToNodeMeshEnabled", default="-"),
                             "ASNUMBER": _s("spec", "asNumber", default="-")},
        "FelixConfiguration": {"NAME": name},
        "ClusterInformation": {"NAME": name},
    }  # fmt: skip


HEADINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (ps, wide)
    "IPPool": (("NAME", "CIDR", "SELECTOR"),
               ("NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "SELECTOR")),
    "Node": (("NAME",), ("NAME", "ASN", "IPV4", "IPV6")),
    "WorkloadEndpoint": (("NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE"),
                         ("NAMESPACE", "NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE",
                          "PROFILES", "NATS")),
    "HostEndpoint": (("NAME", "NODE"), ("NAME", "NODE", "INTERFACE", "IPS", "PROFILES")),
    "Profile": (("NAME",), ("NAME", "LABELS")),
    "NetworkPolicy": (("NAMESPACE", "NAME"), ("NAMESPACE", "NAME", "TIER", "ORDER", "SELECTOR")),
    "GlobalNetworkPolicy": (("NAME",), ("NAME", "TIER", "ORDER", "SELECTOR")),
    "StagedNetworkPolicy": (("NAMESPACE", "NAME", "TIER"),
                            ("NAMESPACE", "NAME", "TIER", "ORDER", "SELECTOR")),
    "StagedGlobalNetworkPolicy": (("NAME", "TIER"), ("NAME", "TIER", "ORDER", "SELECTOR")),
    "StagedKubernetesNetworkPolicy": (("NAMESPACE", "NAME"), ("NAMESPACE", "NAME", "ACTION")),
    "Tier": (("NAME", "ORDER"), ("NAME", "ORDER", "DEFAULTACTION")),
    "GlobalNetworkSet": (("NAME",), ("NAME", "NETS")),
    "NetworkSet": (("NAMESPACE", "NAME"), ("NAMESPACE", "NAME", "NETS")),
    "BGPPeer": (("NAME", "PEERIP", "NODE", "ASN"), ("NAME", "PEERIP", "NODE", "ASN")),
    "BGPConfiguration": (("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"),
                         ("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER")),
    "FelixConfiguration": (("NAME",), ("NAME",)),
    "ClusterInformation": (("NAME",), ("NAME",)),
}  # fmt: skip


def table(
    kind: str,
    resources: list[Resource],
    *,
    wide: bool = False,
    custom: list[str] | None = None,
    default_asn: Callable[[], str] = lambda: "64512",
) -> str:
    """calicoctl's table for resources of one kind (custom: the columns to show, by heading)."""
    cells = columns(default_asn)[kind]
    heads = list(custom) if custom else list(HEADINGS[kind][1 if wide else 0])
    unknown = [h for h in heads if h not in cells]
    if unknown:
        raise ValueError(
            f"unknown column {unknown[0]!r} for {kind} (known: {', '.join(sorted(cells))})"
        )
    rows = [heads] + [[cells[h](r) for h in heads] for r in resources]
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    lines = []
    for row in rows:
        padded = [cell.ljust(widths[i] + 3) for i, cell in enumerate(row[:-1])]
        lines.append(("".join(padded) + row[-1]).rstrip())
    return "\n".join(lines) + "\n"


def as_list(resources: list[Resource], kind: str | None = None) -> Resource:
    """A ``<Kind>List`` when listing one kind, else a ``List``."""
    return {
        "apiVersion": kinds.API_VERSION,
        "items": resources,
        "kind": f"{kind}List" if kind else "List",
        "metadata": {},
    }


def to_yaml(doc: Resource) -> str:
    import yaml

    return str(yaml.dump(doc, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=True))


def to_json(doc: Resource) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
