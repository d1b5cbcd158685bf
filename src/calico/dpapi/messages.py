"""The messages the calculation graph sends to the dataplane (frozen, compared by value).

Ordering contract (what ``calc.EventSequencer.flush`` guarantees within one flush)::

    ConfigUpdate                            (always in the first flush; then when it changes)
      → IPAMPoolUpdate → HostMetadataUpdate → VXLANTunnelEndpointUpdate
                                            (what routes refer to exists before them)
      → IPSetUpdate / IPSetDeltaUpdate      (sets exist before rules use them)
      → ActivePolicyUpdate / ActiveProfileUpdate
      → WorkloadEndpointUpdate / HostEndpointUpdate
      → RouteUpdate → RouteRemove
      → WorkloadEndpointRemove / HostEndpointRemove
      → ActiveProfileRemove / ActivePolicyRemove
      → IPSetRemove                          (nothing references a set when it goes)
      → VXLANTunnelEndpointRemove → HostMetadataRemove → IPAMPoolRemove
                                            (no route uses them any more)
      → InSync                               (once: last in the flush after the first full sync)

Every ID a rule or endpoint mentions has been sent (as an update) earlier in the same flush or
in an earlier one, and is removed only after its last user. A RouteUpdate's gateway is its node's
VTEP address (``vxlan.calico``) or its node's IPv4 address (``tunl0``), both sent before it, and
the pool holding its destination says to encapsulate that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# IP set kinds: "net" members are CIDR strings ("10.0.0.1/32", "fd00::/64"); "port" members are
# "<ip>,<proto>,<port>" strings (named ports resolved to numbers, one per endpoint address).
IPSET_NET = "net"
IPSET_PORT = "port"


@dataclass(frozen=True, slots=True)
class PolicyID:
    """A policy's identity: ``namespace`` is None for a GlobalNetworkPolicy."""

    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule, with selectors replaced by IP set IDs (all sets listed must match)."""

    action: str  # "allow" | "deny" | "log" | "pass"
    ip_version: int | None = None
    protocol: str | None = None  # nft protocol name ("tcp", "icmp", "ipv6-icmp") or a number
    not_protocol: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    src_ipset_ids: tuple[str, ...] = ()
    not_src_ipset_ids: tuple[str, ...] = ()
    src_ports: tuple[str, ...] = ()  # "80" or "1000-2000"
    not_src_ports: tuple[str, ...] = ()
    src_named_port_ipset_ids: tuple[str, ...] = ()
    not_src_named_port_ipset_ids: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    dst_ipset_ids: tuple[str, ...] = ()
    not_dst_ipset_ids: tuple[str, ...] = ()
    dst_ports: tuple[str, ...] = ()
    not_dst_ports: tuple[str, ...] = ()
    dst_named_port_ipset_ids: tuple[str, ...] = ()
    not_dst_named_port_ipset_ids: tuple[str, ...] = ()
    # A rule that can never match (e.g. a selector on a family it has no nets in); kept so rule
    # indexes stay aligned with the resource for counters.
    never: bool = False

    def ipset_ids(self) -> tuple[str, ...]:
        return (
            self.src_ipset_ids
            + self.not_src_ipset_ids
            + self.src_named_port_ipset_ids
            + self.not_src_named_port_ipset_ids
            + self.dst_ipset_ids
            + self.not_dst_ipset_ids
            + self.dst_named_port_ipset_ids
            + self.not_dst_named_port_ipset_ids
        )


@dataclass(frozen=True, slots=True)
class Policy:
    inbound_rules: tuple[Rule, ...] = ()
    outbound_rules: tuple[Rule, ...] = ()
    untracked: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    inbound_rules: tuple[Rule, ...] = ()
    outbound_rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class TierInfo:
    """One tier that applies to an endpoint: its ordered policies per direction (a direction
    without policies is skipped for that direction) and its ``defaultAction`` (Deny | Pass).
    An endpoint's tiers are in evaluation order (tier order, then name); see ``policy_plan``."""

    name: str = "default"
    ingress_policies: tuple[PolicyID, ...] = ()
    egress_policies: tuple[PolicyID, ...] = ()
    default_action: str = "Deny"


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    name: str  # namespace/name of the WorkloadEndpoint resource
    iface: str
    mac: str | None = None
    ipv4_nets: tuple[str, ...] = ()
    ipv6_nets: tuple[str, ...] = ()
    tiers: tuple[TierInfo, ...] = ()
    profile_ids: tuple[str, ...] = ()
    # The tiers as they would be with the staged policies enforced (a staged Set replaces the
    # policy of the same name, a staged Delete removes it); None when no staged policy is in play
    # for this endpoint. Staged policies' ids carry the ``staged:`` name prefix.
    staged_tiers: tuple[TierInfo, ...] | None = None


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    name: str
    iface: str
    expected_ipv4_addrs: tuple[str, ...] = ()
    expected_ipv6_addrs: tuple[str, ...] = ()
    tiers: tuple[TierInfo, ...] = ()  # normal policies (host traffic)
    untracked_tiers: tuple[TierInfo, ...] = ()  # doNotTrack
    pre_dnat_tiers: tuple[TierInfo, ...] = ()  # preDNAT (ingress only)
    forward_tiers: tuple[TierInfo, ...] = ()  # applyOnForward (forwarded traffic)
    profile_ids: tuple[str, ...] = ()
    staged_tiers: tuple[TierInfo, ...] | None = None  # staged view of ``tiers`` (host traffic)


# ---- the messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """FelixConfiguration values from the datastore: ``default`` then ``node.<name>`` merged."""

    global_config: tuple[tuple[str, object], ...] = ()
    node_config: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class InSync:
    """Everything the datastore held at the first complete sync has been sent."""


@dataclass(frozen=True, slots=True)
class IPSetUpdate:
    id: str
    kind: str
    members: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class IPSetDeltaUpdate:
    id: str
    added: frozenset[str] = field(default_factory=frozenset)
    removed: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class IPSetRemove:
    id: str


@dataclass(frozen=True, slots=True)
class ActivePolicyUpdate:
    id: PolicyID
    policy: Policy


@dataclass(frozen=True, slots=True)
class ActivePolicyRemove:
    id: PolicyID


@dataclass(frozen=True, slots=True)
class ActiveProfileUpdate:
    id: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class ActiveProfileRemove:
    id: str


@dataclass(frozen=True, slots=True)
class WorkloadEndpointUpdate:
    id: str
    endpoint: WorkloadEndpoint


@dataclass(frozen=True, slots=True)
class WorkloadEndpointRemove:
    id: str


@dataclass(frozen=True, slots=True)
class HostEndpointUpdate:
    id: str
    endpoint: HostEndpoint


@dataclass(frozen=True, slots=True)
class HostEndpointRemove:
    id: str


# ---- cluster-wide: pools, hosts, VXLAN tunnel endpoints, encapsulated routes ----------------

ENCAP_NEVER, ENCAP_ALWAYS, ENCAP_CROSS_SUBNET = "Never", "Always", "CrossSubnet"
VXLAN_DEVICE = "vxlan.calico"
IPIP_DEVICE = "tunl0"
# Route types: an IPAM block affine to another node; a workload address on another node that
# its node's blocks do not cover (borrowed from another node's block, or in no block at all).
ROUTE_REMOTE_BLOCK = "remote-block"
ROUTE_REMOTE_WORKLOAD = "remote-workload"


@dataclass(frozen=True, slots=True)
class IPPool:
    """What the dataplane needs of an IPPool (``disabled`` pools are sent too: they still hold
    addresses, are never masquerade destinations and still route their blocks)."""

    cidr: str
    masquerade: bool = False  # natOutgoing
    ipip_mode: str = ENCAP_NEVER
    vxlan_mode: str = ENCAP_NEVER
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class IPAMPoolUpdate:
    id: str  # the IPPool's name
    pool: IPPool


@dataclass(frozen=True, slots=True)
class IPAMPoolRemove:
    id: str


@dataclass(frozen=True, slots=True)
class HostMetadataUpdate:
    """A cluster Node's addresses. ``ipv4_addr``/``ipv6_addr`` keep the prefix length written in
    the Node (``10.99.1.11/24``: the subnet, for CrossSubnet); tunnel fields are bare."""

    hostname: str
    ipv4_addr: str | None = None
    ipv6_addr: str | None = None
    ipip_tunnel_addr: str | None = None
    vxlan_tunnel_addr: str | None = None
    vxlan_tunnel_mac: str | None = None


@dataclass(frozen=True, slots=True)
class HostMetadataRemove:
    hostname: str


@dataclass(frozen=True, slots=True)
class VXLANTunnelEndpointUpdate:
    """A node that has all a VTEP needs (this node's own included)."""

    node: str
    mac: str
    ipv4_addr: str  # the node's VXLAN tunnel address
    parent_device_ip: str  # the node's own address: where its VXLAN packets go


@dataclass(frozen=True, slots=True)
class VXLANTunnelEndpointRemove:
    node: str


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """An encapsulated route: ``dst via gateway dev device onlink``."""

    dst: str  # CIDR
    type: str  # ROUTE_REMOTE_BLOCK | ROUTE_REMOTE_WORKLOAD
    dst_node: str
    gateway: str
    device: str  # VXLAN_DEVICE | IPIP_DEVICE


@dataclass(frozen=True, slots=True)
class RouteRemove:
    dst: str


Message = (
    ConfigUpdate
    | InSync
    | IPSetUpdate
    | IPSetDeltaUpdate
    | IPSetRemove
    | ActivePolicyUpdate
    | ActivePolicyRemove
    | ActiveProfileUpdate
    | ActiveProfileRemove
    | WorkloadEndpointUpdate
    | WorkloadEndpointRemove
    | HostEndpointUpdate
    | HostEndpointRemove
    | IPAMPoolUpdate
    | IPAMPoolRemove
    | HostMetadataUpdate
    | HostMetadataRemove
    | VXLANTunnelEndpointUpdate
    | VXLANTunnelEndpointRemove
    | RouteUpdate
    | RouteRemove
)
