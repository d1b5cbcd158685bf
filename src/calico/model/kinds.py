"""Calico v3 kinds: names, plurals, scope, and their keys in etcd.

Keys keep Calico's layout, ``/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>``,
so that tools reading a Calico etcd find things where they expect them.
"""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION = "projectcalico.org/v3"
RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # e.g. "GlobalNetworkPolicy"
    plural: str  # e.g. "globalnetworkpolicies"
    namespaced: bool
    aliases: tuple[str, ...] = ()

    def prefix(self, namespace: str | None = None) -> str:
        """The etcd prefix listing this kind (in one namespace when given)."""
        base = f"{RESOURCE_PREFIX}{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, name: str, namespace: str | None = None) -> str:
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.name} {name!r}: metadata.namespace is required")
            return f"{RESOURCE_PREFIX}{self.plural}/{namespace}/{name}"
        return f"{RESOURCE_PREFIX}{self.plural}/{name}"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("IPPool", "ippools", False, ("ippool", "ippools", "ipp", "ipps", "pool", "pools")),
        Kind("Node", "nodes", False, ("node", "nodes", "no", "nos")),
        Kind(
            "WorkloadEndpoint",
            "workloadendpoints",
            True,
            ("workloadendpoint", "workloadendpoints", "wep", "weps"),
        ),
        Kind(
            "HostEndpoint", "hostendpoints", False, ("hostendpoint", "hostendpoints", "hep", "heps")
        ),
        Kind("Profile", "profiles", False, ("profile", "profiles", "pro", "pros")),
        Kind(
            "NetworkPolicy",
            "networkpolicies",
            True,
            ("networkpolicy", "networkpolicies", "policy", "policies", "pol", "pols", "np"),
        ),
        Kind(
            "GlobalNetworkPolicy",
            "globalnetworkpolicies",
            False,
            ("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps"),
        ),
        Kind(
            "GlobalNetworkSet",
            "globalnetworksets",
            False,
            ("globalnetworkset", "globalnetworksets", "gns"),
        ),
        Kind("NetworkSet", "networksets", True, ("networkset", "networksets", "ns-set", "netset")),
        Kind("Tier", "tiers", False, ("tier", "tiers")),
        Kind(
            "StagedNetworkPolicy",
            "stagednetworkpolicies",
            True,
            (
                "stagednetworkpolicy",
                "stagednetworkpolicies",
                "stagedpolicy",
                "stagedpolicies",
                "snp",
                "spol",
                "spols",
            ),
        ),
        Kind(
            "StagedGlobalNetworkPolicy",
            "stagedglobalnetworkpolicies",
            False,
            ("stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"),
        ),
        Kind(
            "StagedKubernetesNetworkPolicy",
            "stagedkubernetesnetworkpolicies",
            True,
            ("stagedkubernetesnetworkpolicy", "stagedkubernetesnetworkpolicies", "sknp", "sknps"),
        ),
        Kind("BGPPeer", "bgppeers", False, ("bgppeer", "bgppeers", "bgpp", "bgpps")),
        Kind(
            "BGPConfiguration",
            "bgpconfigurations",
            False,
            ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
        ),
        Kind(
            "FelixConfiguration",
            "felixconfigurations",
            False,
            ("felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"),
        ),
        Kind(
            "ClusterInformation",
            "clusterinformations",
            False,
            ("clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"),
        ),
    )
}

_BY_ALIAS: dict[str, Kind] = {}
for _k in KINDS.values():
    _BY_ALIAS[_k.name.lower()] = _k
    for _a in _k.aliases:
        _BY_ALIAS[_a] = _k


def lookup(name: str) -> Kind:
    """The Kind for a kind name or calicoctl alias (case-insensitive); ValueError if unknown."""
    kind = _BY_ALIAS.get(name.lower())
    if kind is None:
        raise ValueError(f"kind {name!r}: unknown resource type")
    return kind


def parse_key(key: str) -> tuple[Kind, str | None, str] | None:
    """(kind, namespace, name) for a resource key, or None if the key is not a resource key."""
    if not key.startswith(RESOURCE_PREFIX):
        return None
    parts = key[len(RESOURCE_PREFIX) :].split("/")
    for kind in KINDS.values():
        if parts[0] != kind.plural:
            continue
        if kind.namespaced and len(parts) == 3:
            return kind, parts[1], parts[2]
        if not kind.namespaced and len(parts) == 2:
            return kind, None, parts[1]
    return None
